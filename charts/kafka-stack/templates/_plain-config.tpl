{{/* The plain mode's ConfigMap: server.properties and the start script of every node. A named
template so that the StatefulSet's pods carry its checksum and roll when it changes. */}}
{{- define "kafka-stack.plainConfig" -}}
{{- $c := .Values.clusterName }}
{{- $n := int .Values.kafka.replicas }}
{{- $domain := printf "%s-kafka-brokers.%s.svc" $c .Release.Namespace }}
{{- /* The volume is mounted at $data; Kafka's log directory is a subdirectory of it, because
a fresh ext4 volume holds lost+found at its root, which Kafka 4 refuses to start with
("'lost+found' is not in the form of topic-partition"). */}}
{{- $data := "/var/lib/kafka/data" }}
{{- $logs := printf "%s/kafka-log" $data }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $c }}-kafka-config
  labels:
    {{- include "kafka-stack.labels" . | nindent 4 }}
data:
  server.properties: |
    process.roles=broker,controller
    node.id=@NODE_ID@
    controller.quorum.voters={{ range $i, $_ := until $n }}{{ if $i }},{{ end }}{{ $i }}@{{ $c }}-kafka-{{ $i }}.{{ $domain }}:9093{{ end }}
    listeners=PLAINTEXT://:9092,CONTROLLER://:9093
    advertised.listeners=PLAINTEXT://@POD_NAME@.{{ $domain }}:9092
    controller.listener.names=CONTROLLER
    inter.broker.listener.name=PLAINTEXT
    listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
    log.dirs={{ $logs }}
    group.initial.rebalance.delay.ms=0
    {{- if not (hasKey .Values.kafka.config "auto.create.topics.enable") }}
    # Topics come from the lammps-stream chart's topics Job, with their settings (a worker
    # subscribing first must not make the runs topic with the broker's defaults).
    auto.create.topics.enable=false
    {{- end }}
    {{- range $key, $value := (include "kafka-stack.replication" . | fromYaml) }}
    {{ $key }}={{ include "kafka-stack.text" $value }}
    {{- end }}
    {{- range $key, $value := .Values.kafka.config }}
    {{ $key }}={{ include "kafka-stack.text" $value }}
    {{- end }}
  start.sh: |
    #!/bin/sh
    # Fill in this node's id and address, format storage once, then run the broker. The log
    # directory ({{ $logs }}, log.dirs) is below the volume's root, which may hold lost+found.
    set -eu
    data={{ $data }}
    logs={{ $logs }}
    # A volume formatted at its root by an earlier release of this chart: move its data into
    # the log directory (resumed if a restart interrupted the move) instead of formatting anew.
    if [ ! -e "$logs" ] && { [ -f "$data/meta.properties" ] || [ -d "$logs.moving" ]; }; then
      echo "moving the Kafka data at the root of $data into $logs"
      mkdir -p "$logs.moving"
      for entry in "$data"/* "$data"/.[!.]*; do
        case "$entry" in
          "$data/lost+found" | "$logs.moving") ;;
          *) if [ -e "$entry" ]; then mv "$entry" "$logs.moving/"; fi ;;
        esac
      done
      mv "$logs.moving" "$logs"
    fi
    id="${POD_NAME##*-}"
    sed -e "s/@NODE_ID@/${id}/" -e "s/@POD_NAME@/${POD_NAME}/" \
      /etc/kafka-stack/server.properties > /tmp/server.properties
    # The same properties (log.dirs) for the format step and the broker.
    /opt/kafka/bin/kafka-storage.sh format --ignore-formatted \
      --cluster-id "${CLUSTER_ID}" --config /tmp/server.properties
    exec /opt/kafka/bin/kafka-server-start.sh /tmp/server.properties
{{- end -}}
