{{/* Producer workloads: run ids, names, scripts and specs. */}}

{{/* The run_id of a jobs.runs entry that gives none: the same at every render (helm upgrade,
helm template) for the same release, namespace, jobs.round, run and "occurrence", the entry's
place among the entries without run_id of the same split and params: 0 for the first, 1 for
the second... Not its line: removing or adding another entry leaves the others' ids (and, once
they ran, the service skips them), while identical entries still get ids of their own. Bump
jobs.round for a fresh batch of ids. A UUID (version 8: name-based, SHA-256), as RunRecords
need. Takes (dict "root" $ "occurrence" N "run" (dict "split" ... "params" ...)). */}}
{{- define "lammps-stream.runId" -}}
{{- $root := .root -}}
{{- $h := sha256sum (printf "lammps-stream/%s/%s/%s/%s/%d" $root.Release.Namespace $root.Release.Name (include "lammps-stream.text" $root.Values.jobs.round) (toJson .run) (int .occurrence)) -}}
{{- printf "%s-%s-8%s-8%s-%s" (substr 0 8 $h) (substr 8 12 $h) (substr 13 16 $h) (substr 17 20 $h) (substr 20 32 $h) -}}
{{- end -}}

{{/* The name of a producer workload (Indexed Job, MiniCluster, MPIJob): <fullname>-runs-<hash>
of its rendered spec, the plan and jobs.round. A Job's pod template cannot change, so a new
plan or new pods need a new name; the same values keep the name, and helm upgrade leaves a
running batch alone. Pods' host names add a suffix to it, and must stay DNS labels (63
characters): <name>-<index> (an Indexed Job's, and the MiniCluster's Job's), <name>-launcher
and <name>-worker-<size-1> (the MPI Operator refuses an MPIJob whose names would not fit), so
the fullname is cut to leave room for the longest. An MPIJob's and a MiniCluster's (that of
its headless Service) must also start with a letter. Takes (dict "root" $ "spec" TEXT "kind"
"indexed"|"flux"|"mpijob"). */}}
{{- define "lammps-stream.runsName" -}}
{{- $root := .root -}}
{{- $last := sub (int $root.Values.jobs.mpi.size) 1 -}}
{{- $suffix := printf "-%d" $last -}}
{{- if eq .kind "indexed" -}}
{{- $suffix = printf "-%d" (sub (len (include "lammps-stream.planLines" $root | fromJsonArray)) 1) -}}
{{- else if eq .kind "mpijob" -}}
{{- $suffix = printf "-worker-%d" $last -}}
{{- if lt (len $suffix) (len "-launcher") -}}
{{- $suffix = "-launcher" -}}
{{- end -}}
{{- end -}}
{{- /* 63 - the suffix - "-runs-" and 10 hex digits; 40 at most, as before */ -}}
{{- $room := int (min 40 (sub (sub 63 (len $suffix)) 16)) -}}
{{- $hash := sha256sum (printf "%s\n%s\n%s" .spec (include "lammps-stream.planLines" $root) (include "lammps-stream.text" $root.Values.jobs.round)) | trunc 10 -}}
{{- $name := printf "%s-runs-%s" (include "lammps-stream.fullname" $root | trunc $room | trimSuffix "-") $hash -}}
{{- if and (eq .kind "mpijob") (not (regexMatch "^[a-z]" $name)) -}}
{{- fail (printf "jobs.mpi.operator=mpijob: the MPIJob's name %s must start with a letter (the MPI Operator takes DNS-1035 labels only); use a release name or fullnameOverride that starts with one" $name) -}}
{{- end -}}
{{- if and (eq .kind "flux") (not (regexMatch "^[a-z]" $name)) -}}
{{- fail (printf "jobs.mpi.operator=flux: the MiniCluster's name %s must start with a letter (the Flux Operator names the MiniCluster's headless Service after it, and a Service's name is a DNS-1035 label); use a release name or fullnameOverride that starts with one" $name) -}}
{{- end -}}
{{- $name -}}
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
# and a retried run keeps its run_id. SIGTERM stops it (143) once the command it runs has.
limit="${1:-{{ include "lammps-stream.text" .Values.jobs.spoolReplaySeconds }}}"
spool="${LAMMPS_STREAM_PRODUCER_SPOOL_DIR:-/var/lib/lammps-stream/spool}"
pid=
trap '[ -z "$pid" ] || { kill -TERM "$pid" 2>/dev/null; wait "$pid"; }; exit 143' TERM
left() {
  # records (<run_id>-<status>.json), and claims (.sending-*.json): records being sent
  find "$spool" -maxdepth 1 -type f \( -name '.sending-*.json' -o \( -name '*.json' ! -name '.*' \) \) 2>/dev/null | wc -l
}
# This runs once the pod's runs have ended: no process of the pod is sending any more, so a
# claim (.sending-<epoch>.<tag>-<record>, producers/spool.py) is one a sender
# that died left behind; put it back now rather than after the 5 minutes `produce --flush`
# waits before it takes a claim for dead.
for claim in "$spool"/.sending-*.json; do
  [ -f "$claim" ] || continue
  name="${claim##*/}"
  name="${name#.sending-}"
  case "$name" in
    [0-9]*.*-?*.json) mv -f "$claim" "$spool/${name#*-}" ;;
  esac
done
[ "$(left)" -eq 0 ] && exit 0
start="$(date +%s)"
while :; do
  lammps-stream produce --flush &
  pid=$!
  if wait "$pid" && [ "$(left)" -eq 0 ]; then
    exit 0
  fi
  if [ "$(( $(date +%s) - start ))" -ge "$limit" ]; then
    echo "lammps-stream: $(left) record(s) of finished runs still in the spool $spool on $(uname -n) after ${limit}s of replays; the broker did not take them and they go with this pod:" >&2
    ls -la "$spool" >&2
    exit 75
  fi
  sleep 15 &
  pid=$!
  wait "$pid"
done
{{- end -}}

{{- define "lammps-stream.runOneScript" -}}
#!/bin/sh
# An Indexed Job's pod: line $1 of the plan, then the spool replay (replay-spool.sh). This shell
# is the pod's first process, and a signal it has no handler for is lost: the handler comes
# first. It hands SIGTERM and SIGINT on to what runs (run-one, which stops the ranks and
# publishes the run as failed (Terminated); or the replay), and the pod then makes one last
# replay attempt, without waiting, before it goes.
stopping=
child=
trap 'stopping=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' TERM INT
# run "$@" in the background and wait for it, signals passed on; its exit status in $status
supervise() {
  "$@" &
  child=$!
  [ -z "$stopping" ] || kill -TERM "$child" 2>/dev/null  # a signal came before $child was set
  status=0
  wait "$child" || status=$?
  while kill -0 "$child" 2>/dev/null; do  # a signal ended the wait, not the command
    status=0
    wait "$child" || status=$?
  done
  child=
}
[ -z "$stopping" ] || exit 143  # stopped before the run began
supervise lammps-stream run-one --plan /etc/lammps-stream/plans.jsonl --index "$1"
run_status=$status
if [ -z "$stopping" ]; then
  supervise sh /etc/lammps-stream/replay-spool.sh
  if [ -z "$stopping" ]; then
    [ "$status" -eq 0 ] || exit "$status"
    exit "$run_status"
  fi
fi
# the pod is being stopped: one last attempt, no waiting
sh /etc/lammps-stream/replay-spool.sh 0 || exit $?
exit "$run_status"
{{- end -}}

{{/* The Indexed Job's spec (job-indexed.yaml); its name is a hash of it. */}}
{{- define "lammps-stream.indexedJobSpec" -}}
{{- $plan := include "lammps-stream.planLines" . | fromJsonArray -}}
completionMode: Indexed
completions: {{ len $plan }}
parallelism: {{ int .Values.jobs.indexed.parallelism }}
backoffLimitPerIndex: {{ int .Values.jobs.indexed.backoffLimitPerIndex }}
{{- /* none by default: a finished Job stays, so an upgrade finds it and does not run it again */}}
{{- $ttl := .Values.jobs.indexed.ttlSecondsAfterFinished }}
{{- if not (kindIs "invalid" $ttl) }}
ttlSecondsAfterFinished: {{ int $ttl }}
{{- end }}
template:
  metadata:
    labels:
      {{- include "lammps-stream.selectorLabels" . | nindent 6 }}
      app.kubernetes.io/component: producer
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "lammps-stream.serviceAccountName" . }}
    automountServiceAccountToken: false
    enableServiceLinks: false
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
{{- $environment := dict "LAMMPS_STREAM_CONFIG" "/etc/lammps-stream/lammps-stream.yaml" -}}
{{- $_ := set $environment "LAMMPS_STREAM_PRODUCER_SPOOL_DIR" "/tmp/lammps-stream/spool" -}}
{{- $_ = set $environment "LAMMPS_STREAM_PRODUCER_JOBS_DIR" "/tmp/lammps-stream/jobs" -}}
{{- $_ = set $environment "LAMMPS_STREAM_STACK_STATE_DIR" "/tmp/lammps-stream/state" -}}
{{- $_ = set $environment "LAMMPS_STREAM_STACK_CACHE_DIR" "/tmp/lammps-stream/cache" -}}
{{- with $login.username -}}
{{- $_ = set $environment "LAMMPS_STREAM_KAFKA_SASL_USERNAME" . -}}
{{- end -}}
{{- with .Values.secrets.tls -}}
{{- if .ca.existingSecret -}}
{{- $_ = set $environment "LAMMPS_STREAM_KAFKA_SSL_CAFILE" (printf "/etc/lammps-stream-tls/ca/%s" .ca.key) -}}
{{- end -}}
{{- if .client.existingSecret -}}
{{- $_ = set $environment "LAMMPS_STREAM_KAFKA_SSL_CERTFILE" (printf "/etc/lammps-stream-tls/client/%s" .client.certKey) -}}
{{- $_ = set $environment "LAMMPS_STREAM_KAFKA_SSL_KEYFILE" (printf "/etc/lammps-stream-tls/client/%s" .client.keyKey) -}}
{{- end -}}
{{- end -}}
{{- $secrets := dict -}}
{{- if $login.existingSecret -}}
{{- range $name, $key := $login.env -}}
{{- if not (and $login.username (eq $name "LAMMPS_STREAM_KAFKA_SASL_USERNAME")) -}}
{{- $_ = set $secrets $name (dict "name" $login.existingSecret "key" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
size: {{ int $mpi.size }}
tasks: {{ mul (int $mpi.size) (int $mpi.tasksPerPod) }}
# Finished, the MiniCluster stays, with its pods and their logs (cleanup would delete it as
# soon as pod 0 ends, and the next helm upgrade would create it again: the plan would rerun).
cleanup: false
# The entrypoint's full output (quiet would hide the replay's list of leftover records). Not
# strict: set -e would also end a worker's retries to join the lead broker; the post command
# below passes the outcome on instead.
logging:
  quiet: false
  strict: false
# Not retried: a failed batch fails every pod (the post command), and the Job fails with the
# last of them, size - 1 failures being allowed; sooner, it would delete pods still running,
# and their logs. A retried pod 0 would wait forever for workers that have finished. One pod
# is retried once (the operator's least backoffLimit is 1).
backoffLimit: {{ max 1 (sub (int $mpi.size) 1) }}
flux:
  container:
    image: {{ $mpi.flux.viewImage }}
pod:
  restartPolicy: Never
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
    # the batch fails if records remain there (75), or if a run failed (1), and marks every
    # node so (the post command).
    command: |
      {{- range $i, $line := $plan }}
      flux submit --flags=waitable -n {{ int (fromJson $line).params.ranks }} --output=/tmp/run-{{ $i }}.out lammps-stream run-one --plan /etc/lammps-stream/plans.jsonl --index {{ $i }}
      {{- end }}
      flux job wait --all || flux exec -r all touch /tmp/lammps-stream-runs-failed
      flux exec -r all sh /etc/lammps-stream/replay-spool.sh || flux exec -r all touch /tmp/lammps-stream-records-left
      test ! -e /tmp/lammps-stream-records-left || exit 75
      test ! -e /tmp/lammps-stream-runs-failed
    commands:
      # Run by every pod before Flux starts (so before the runs): the pods get a variable for
      # each Service of the namespace, which a MiniCluster cannot turn off (the chart's other
      # pods do, enableServiceLinks), and a Service named lammps-stream... (this chart's, for a
      # release of that name) gives LAMMPS_STREAM_SERVICE_HOST and more, which the config
      # loader refuses as settings it does not know: keep only the chart's LAMMPS_STREAM_*.
      pre: |
        for name in $(env | sed -n 's/^\(LAMMPS_STREAM_[A-Za-z0-9_]*\)=.*/\1/p'); do
          case "$name" in
            {{ keys $environment $secrets | sortAlpha | join "|" }}) ;;
            *) unset "$name" ;;
          esac
        done
      # Run by every pod once its broker has exited, the last of the operator's entrypoint
      # (wait.sh): $? is then the lead broker's `flux start` (the batch's outcome), 0 on a
      # worker. Without it every pod would exit 0 whatever happened.
      post: |
        status=$?
        if [ -e /tmp/lammps-stream-records-left ]; then
          status=75
        elif [ -e /tmp/lammps-stream-runs-failed ]; then
          status=1
        fi
        if [ "$status" -ne 0 ]; then
          echo "lammps-stream: the batch failed (status $status: 75 = records of finished runs left in a spool, listed in pod 0's log; 1 = a run failed; else Flux's own); this pod fails too" >&2
        fi
        touch "$viewbase/flux-operator-complete.txt"
        exit "$status"
    environment:
      {{- toYaml $environment | nindent 6 }}
    {{- with $secrets }}
    secrets:
      {{- toYaml . | nindent 6 }}
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
        enableServiceLinks: false
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
        enableServiceLinks: false
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
