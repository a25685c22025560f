{{- define "kafka-stack.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: kafka-stack
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lammps-stream-ml
{{- end -}}

{{- define "kafka-stack.selectorLabels" -}}
app.kubernetes.io/name: kafka-stack
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: kafka
{{- end -}}

{{- define "kafka-stack.checks" -}}
{{- if and (eq .Values.mode "strimzi") .Values.strimzi.topics.enabled (gt (int .Values.strimzi.topics.replicas) (int .Values.kafka.replicas)) -}}
{{- fail (printf "strimzi.topics.replicas: %d replicas of each topic need at least as many nodes, but kafka.replicas is %d" (int .Values.strimzi.topics.replicas) (int .Values.kafka.replicas)) -}}
{{- end -}}
{{- if .Values.strimzi.authorization.enabled -}}
{{- if ne .Values.mode "strimzi" -}}
{{- fail "strimzi.authorization: ACLs come with mode strimzi only; set mode: strimzi or authorization.enabled: false" -}}
{{- end -}}
{{- if not .Values.strimzi.scram.enabled -}}
{{- fail "strimzi.authorization: ACLs name SCRAM users; set strimzi.scram.enabled: true too" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Replication settings that fit the number of nodes: 3 copies (2 in sync) from 3 nodes up. */}}
{{- define "kafka-stack.replication" -}}
{{- $n := int .Values.kafka.replicas -}}
{{- $rf := min $n 3 -}}
{{- $isr := min $n 2 -}}
offsets.topic.replication.factor: {{ $rf }}
transaction.state.log.replication.factor: {{ $rf }}
transaction.state.log.min.isr: {{ $isr }}
share.coordinator.state.topic.replication.factor: {{ $rf }}
share.coordinator.state.topic.min.isr: {{ $isr }}
default.replication.factor: {{ $rf }}
min.insync.replicas: {{ $isr }}
{{- end -}}

{{/* One entry of a KafkaUser's authorization.acls. Takes (list type name patternType operations). */}}
{{- define "kafka-stack.acl" -}}
- resource:
    type: {{ index . 0 }}
    name: {{ index . 1 | quote }}
    patternType: {{ index . 2 }}
  operations: {{ index . 3 | toJson }}
  host: "*"
{{- end -}}

{{/* A value as text in a properties file or an expression: numbers in full. Helm reads every
number of a values file as a float, which Go prints as 1.073741824e+09 from a million up;
JSON prints it as 1073741824. Strings and booleans as they are. */}}
{{- define "kafka-stack.text" -}}
{{- if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- toJson . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}
