{{/* Producer workloads: run ids, names, scripts and specs. */}}

{{/* The run_id of line "index" of jobs.runs, when the entry gives none: the same at every
render (helm upgrade, helm template) for the same release, namespace, jobs.round, line and
run, so an upgrade neither reruns a run under a new id nor restarts anything; bump jobs.round
for a fresh batch of ids. A UUID (version 8: name-based, SHA-256), as RunRecords need. Takes
(dict "root" $ "index" N "run" (dict "split" ... "params" ...)). */}}
{{- define "lammps-stream.runId" -}}
{{- $root := .root -}}
{{- $h := sha256sum (printf "lammps-stream/%s/%s/%s/%d/%s" $root.Release.Namespace $root.Release.Name (include "lammps-stream.text" $root.Values.jobs.round) (int .index) (toJson .run)) -}}
{{- printf "%s-%s-8%s-8%s-%s" (substr 0 8 $h) (substr 8 12 $h) (substr 13 16 $h) (substr 17 20 $h) (substr 20 32 $h) -}}
{{- end -}}

{{/* The name of a producer workload (Indexed Job, MPIJob, MiniCluster): <fullname>-runs-<hash>
of its rendered spec, the plan and jobs.round. A Job's pod template cannot change, so a new
plan or new pods need a new name; the same values keep the name, and helm upgrade leaves a
running batch alone. Takes (dict "root" $ "spec" TEXT). */}}
{{- define "lammps-stream.runsName" -}}
{{- $root := .root -}}
{{- $hash := sha256sum (printf "%s\n%s\n%s" .spec (include "lammps-stream.planLines" $root) (include "lammps-stream.text" $root.Values.jobs.round)) | trunc 10 -}}
{{- printf "%s-runs-%s" (include "lammps-stream.fullname" $root | trunc 40 | trimSuffix "-") $hash -}}
{{- end -}}

{{/* NODE_NAME, the Kubernetes node a producer pod runs on (downward API): the Pushgateway
groups a run's figures by it rather than by the pod's name, which is new for every run. */}}
{{- define "lammps-stream.nodeNameEnv" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end -}}

{{/* The producers' scripts, in the ConfigMap next to plans.jsonl (/etc/lammps-stream). */}}
{{- define "lammps-stream.replaySpoolScript" -}}
#!/bin/sh
# Replay this pod's spool. A finished run whose record the broker did not take (unreachable)
# waits in the spool, and the spool goes with the pod: retry `lammps-stream produce --flush`
# (non-zero while the broker is unreachable) for up to $1 seconds (jobs.spoolReplaySeconds).
# Exits 0 once the spool is empty, 75 if records remain: the pod fails, so does its Job,
# and a retried run keeps its run_id.
limit="${1:-{{ include "lammps-stream.text" .Values.jobs.spoolReplaySeconds }}}"
spool="${LAMMPS_STREAM_PRODUCER_SPOOL_DIR:-/var/lib/lammps-stream/spool}"
left() {
  # spooled records, and claims of a replay that died (released after 5 minutes)
  find "$spool" -maxdepth 1 -type f -name '*.json' ! -name '.tmp-*' 2>/dev/null | wc -l
}
[ "$(left)" -eq 0 ] && exit 0
start="$(date +%s)"
while :; do
  if lammps-stream produce --flush && [ "$(left)" -eq 0 ]; then
    exit 0
  fi
  if [ "$(( $(date +%s) - start ))" -ge "$limit" ]; then
    echo "lammps-stream: $(left) record(s) of finished runs still in the spool $spool on $(uname -n) after ${limit}s of replays; the broker did not take them and they go with this pod:" >&2
    ls -l "$spool" >&2
    exit 75
  fi
  sleep 15
done
{{- end -}}

{{- define "lammps-stream.runOneScript" -}}
#!/bin/sh
# An Indexed Job's pod: line $1 of the plan, then the spool replay (replay-spool.sh). This shell
# is the pod's first process: it hands SIGTERM and SIGINT on to run-one, which stops the ranks
# and publishes the run as failed (Terminated) before the pod goes.
lammps-stream run-one --plan /etc/lammps-stream/plans.jsonl --index "$1" &
child=$!
stopping=
trap 'stopping=1; kill -TERM "$child" 2>/dev/null' TERM INT
status=0
wait "$child" || status=$?
while kill -0 "$child" 2>/dev/null; do  # a signal ended the wait, not run-one
  status=0
  wait "$child" || status=$?
done
if [ -n "$stopping" ]; then
  sh /etc/lammps-stream/replay-spool.sh 0 || exit $?  # one try: the pod is going
else
  sh /etc/lammps-stream/replay-spool.sh || exit $?
fi
exit "$status"
{{- end -}}

{{/* The Indexed Job's spec (job-indexed.yaml); its name is a hash of it. */}}
{{- define "lammps-stream.indexedJobSpec" -}}
{{- $plan := include "lammps-stream.planLines" . | fromJsonArray -}}
completionMode: Indexed
completions: {{ len $plan }}
parallelism: {{ int .Values.jobs.indexed.parallelism }}
backoffLimitPerIndex: {{ int .Values.jobs.indexed.backoffLimitPerIndex }}
ttlSecondsAfterFinished: {{ int .Values.jobs.indexed.ttlSecondsAfterFinished }}
template:
  metadata:
    labels:
      {{- include "lammps-stream.selectorLabels" . | nindent 6 }}
      app.kubernetes.io/component: producer
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "lammps-stream.serviceAccountName" . }}
    automountServiceAccountToken: false
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml .Values.podSecurityContext | nindent 6 }}
    containers:
      - name: run-one
        image: {{ include "lammps-stream.image" (dict "image" .Values.producerImage "root" .) }}
        imagePullPolicy: {{ .Values.producerImage.pullPolicy }}
        command: ["/bin/sh", "/etc/lammps-stream/run-one.sh"]
        args: ["$(JOB_COMPLETION_INDEX)"]
        env:
          {{- include "lammps-stream.env" (dict "root" . "service" false "client" true "extra" (list (include "lammps-stream.nodeNameEnv" . | fromYamlArray | first))) | nindent 10 }}
        resources:
          {{- toYaml .Values.jobs.indexed.resources | nindent 10 }}
        securityContext:
          {{- toYaml .Values.securityContext | nindent 10 }}
        volumeMounts:
          {{- include "lammps-stream.volumeMounts" . | nindent 10 }}
          - name: shm
            mountPath: /dev/shm
    volumes:
      {{- include "lammps-stream.volumes" . | nindent 6 }}
      - name: shm
        emptyDir:
          medium: Memory
          sizeLimit: {{ include "lammps-stream.text" .Values.jobs.indexed.shmSize }}
{{- end -}}

{{/* The MiniCluster's spec (mpi-jobs.yaml, operator flux); its name is a hash of it. The batch
script is written by the operator's entrypoint inside double quotes: no $, " or ` in it. */}}
{{- define "lammps-stream.miniClusterSpec" -}}
{{- $plan := include "lammps-stream.planLines" . | fromJsonArray -}}
{{- $mpi := .Values.jobs.mpi -}}
{{- $fullname := include "lammps-stream.fullname" . -}}
{{- $login := include "lammps-stream.kafkaLogin" (dict "root" . "client" true) | fromJson -}}
size: {{ int $mpi.size }}
tasks: {{ mul (int $mpi.size) (int $mpi.tasksPerPod) }}
cleanup: true
logging:
  quiet: true
flux:
  container:
    image: {{ $mpi.flux.viewImage }}
pod:
  labels:
    {{- include "lammps-stream.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: producer
containers:
  - name: run-one
    image: {{ include "lammps-stream.image" (dict "image" $mpi.flux.image "root" .) }}
    imagePullPolicy: {{ $mpi.flux.image.pullPolicy }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecret: {{ (first .).name }}
    {{- end }}
    batch: true
    batchRaw: true
    # Each run, then every node's spool replayed (rank 0 of a run publishes from its node):
    # the batch fails if records remain there, or if a run failed.
    command: |
      {{- range $i, $line := $plan }}
      flux submit --flags=waitable -n {{ int (fromJson $line).params.ranks }} --output=/tmp/run-{{ $i }}.out lammps-stream run-one --plan /etc/lammps-stream/plans.jsonl --index {{ $i }}
      {{- end }}
      flux job wait --all || touch /tmp/lammps-stream-runs-failed
      flux exec -r all sh /etc/lammps-stream/replay-spool.sh || exit 75
      test ! -e /tmp/lammps-stream-runs-failed
    environment:
      LAMMPS_STREAM_CONFIG: /etc/lammps-stream/lammps-stream.yaml
      LAMMPS_STREAM_PRODUCER_SPOOL_DIR: /tmp/lammps-stream/spool
      LAMMPS_STREAM_PRODUCER_JOBS_DIR: /tmp/lammps-stream/jobs
      LAMMPS_STREAM_STACK_STATE_DIR: /tmp/lammps-stream/state
      LAMMPS_STREAM_STACK_CACHE_DIR: /tmp/lammps-stream/cache
      {{- with $login.username }}
      LAMMPS_STREAM_KAFKA_SASL_USERNAME: {{ . | quote }}
      {{- end }}
      {{- with .Values.secrets.tls }}
      {{- if .ca.existingSecret }}
      LAMMPS_STREAM_KAFKA_SSL_CAFILE: /etc/lammps-stream-tls/ca/{{ .ca.key }}
      {{- end }}
      {{- if .client.existingSecret }}
      LAMMPS_STREAM_KAFKA_SSL_CERTFILE: /etc/lammps-stream-tls/client/{{ .client.certKey }}
      LAMMPS_STREAM_KAFKA_SSL_KEYFILE: /etc/lammps-stream-tls/client/{{ .client.keyKey }}
      {{- end }}
      {{- end }}
    {{- if $login.existingSecret }}
    secrets:
      {{- range $name, $key := $login.env }}
      {{- if not (and $login.username (eq $name "LAMMPS_STREAM_KAFKA_SASL_USERNAME")) }}
      {{ $name }}:
        name: {{ $login.existingSecret }}
        key: {{ $key }}
      {{- end }}
      {{- end }}
    {{- end }}
    resources:
      {{- toYaml $mpi.resources | nindent 6 }}
    volumes:
      config:
        configMapName: {{ $fullname }}-config
        path: /etc/lammps-stream
        readOnly: true
        items:
          lammps-stream.yaml: lammps-stream.yaml
          plans.jsonl: plans.jsonl
          replay-spool.sh: replay-spool.sh
      {{- with .Values.secrets.tls }}
      {{- if .ca.existingSecret }}
      kafka-ca:
        secretName: {{ .ca.existingSecret }}
        path: /etc/lammps-stream-tls/ca
        readOnly: true
      {{- end }}
      {{- if .client.existingSecret }}
      kafka-client-cert:
        secretName: {{ .client.existingSecret }}
        path: /etc/lammps-stream-tls/client
        readOnly: true
      {{- end }}
      {{- end }}
{{- end -}}

{{/* The MPIJob's spec (mpi-jobs.yaml, operator mpijob); its name is a hash of it. */}}
{{- define "lammps-stream.mpiJobSpec" -}}
{{- $plan := include "lammps-stream.planLines" . | fromJsonArray -}}
{{- $mpi := .Values.jobs.mpi -}}
{{- $env := include "lammps-stream.env" (dict "root" . "service" false "client" true "extra" (list (include "lammps-stream.nodeNameEnv" . | fromYamlArray | first))) -}}
slotsPerWorker: {{ int $mpi.tasksPerPod }}
mpiImplementation: MPICH
sshAuthMountPath: /home/lammps/.ssh
runPolicy:
  cleanPodPolicy: Running
  ttlSecondsAfterFinished: 86400
  backoffLimit: {{ int $mpi.backoffLimit }}
mpiReplicaSpecs:
  Launcher:
    replicas: 1
    restartPolicy: Never
    template:
      metadata:
        labels:
          {{- include "lammps-stream.selectorLabels" . | nindent 10 }}
          app.kubernetes.io/component: producer
      spec:
        automountServiceAccountToken: false
        {{- with .Values.imagePullSecrets }}
        imagePullSecrets:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        securityContext:
          {{- toYaml .Values.podSecurityContext | nindent 10 }}
        containers:
          - name: launcher
            image: {{ include "lammps-stream.image" (dict "image" .Values.producerImage "root" .) }}
            imagePullPolicy: {{ .Values.producerImage.pullPolicy }}
            command: ["/bin/sh", "-c"]
            args:
              - |
                # mpirun hands this environment to the ranks on the workers; NODE_NAME there is
                # the worker's own (its sshd sets it), not the launcher's.
                unset NODE_NAME
                failed=0
                {{- range $i, $line := $plan }}
                mpirun -n {{ int (fromJson $line).params.ranks }} lammps-stream run-one --plan /etc/lammps-stream/plans.jsonl --index {{ $i }} || failed=$((failed + 1))
                {{- end }}
                echo "$failed of {{ len $plan }} runs failed"
                # Rank 0 of a run publishes from the worker it ran on: every worker replays its
                # spool, and the launcher fails if records remain there.
                mpirun -n {{ int $mpi.size }} -ppn 1 sh /etc/lammps-stream/replay-spool.sh || exit 75
                exit 0
            env:
              {{- $env | nindent 14 }}
            resources:
              requests: {cpu: 100m, memory: 256Mi}
              limits: {cpu: 500m, memory: 512Mi}
            securityContext:
              {{- toYaml .Values.securityContext | nindent 14 }}
            volumeMounts:
              {{- include "lammps-stream.volumeMounts" . | nindent 14 }}
        volumes:
          {{- include "lammps-stream.volumes" . | nindent 10 }}
  Worker:
    replicas: {{ int $mpi.size }}
    template:
      metadata:
        labels:
          {{- include "lammps-stream.selectorLabels" . | nindent 10 }}
          app.kubernetes.io/component: producer-worker
      spec:
        automountServiceAccountToken: false
        {{- with .Values.imagePullSecrets }}
        imagePullSecrets:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        securityContext:
          {{- toYaml .Values.podSecurityContext | nindent 10 }}
        containers:
          - name: worker
            image: {{ include "lammps-stream.image" (dict "image" .Values.producerImage "root" .) }}
            imagePullPolicy: {{ .Values.producerImage.pullPolicy }}
            # SetEnv: the ranks started over ssh see the worker's node as NODE_NAME
            command: ["/usr/sbin/sshd", "-De", "-f", "/etc/lammps-stream-sshd/sshd_config", "-o", "SetEnv NODE_NAME=$(NODE_NAME)"]
            env:
              {{- $env | nindent 14 }}
            ports:
              - name: ssh
                containerPort: 2222
            readinessProbe:
              tcpSocket: {port: ssh}
              periodSeconds: 2
            resources:
              {{- toYaml $mpi.resources | nindent 14 }}
            securityContext:
              {{- toYaml .Values.securityContext | nindent 14 }}
            volumeMounts:
              {{- include "lammps-stream.volumeMounts" . | nindent 14 }}
              - name: shm
                mountPath: /dev/shm
        volumes:
          {{- include "lammps-stream.volumes" . | nindent 10 }}
          - name: shm
            emptyDir: {medium: Memory}
{{- end -}}
