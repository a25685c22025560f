{{/* Names, labels and the pieces every pod of the chart shares. */}}

{{- define "lammps-stream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lammps-stream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lammps-stream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "lammps-stream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lammps-stream-ml
{{- end -}}

{{- define "lammps-stream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lammps-stream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lammps-stream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lammps-stream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lammps-stream.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* Environment every lammps-stream container gets: the config file, the keys a pod decides
itself, and the Secrets. Takes (dict "root" $ "extra" list "service" bool "client" bool):
"service" for the worker's own Secrets, "client" for a producer's Kafka login. */}}
{{- define "lammps-stream.env" -}}
{{- $root := .root -}}
- name: LAMMPS_STREAM_CONFIG
  value: /etc/lammps-stream/lammps-stream.yaml
- name: LAMMPS_STREAM_STACK_STATE_DIR
  value: /var/lib/lammps-stream/state
- name: LAMMPS_STREAM_STACK_CACHE_DIR
  value: /var/lib/lammps-stream/cache
- name: LAMMPS_STREAM_PRODUCER_SPOOL_DIR
  value: /var/lib/lammps-stream/spool
- name: LAMMPS_STREAM_PRODUCER_JOBS_DIR
  value: /var/lib/lammps-stream/jobs
- name: HOME
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- range .extra }}
- {{ toYaml . | nindent 2 | trim }}
{{- end }}
{{- $login := include "lammps-stream.kafkaLogin" (dict "root" $root "client" .client) | fromJson }}
{{- if $login.username }}
- name: LAMMPS_STREAM_KAFKA_SASL_USERNAME
  value: {{ $login.username | quote }}
{{- end }}
{{- if $login.existingSecret }}
{{- range $name, $key := $login.env }}
{{- if not (and $login.username (eq $name "LAMMPS_STREAM_KAFKA_SASL_USERNAME")) }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $login.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- with $root.Values.secrets.tls }}
{{- if .ca.existingSecret }}
- name: LAMMPS_STREAM_KAFKA_SSL_CAFILE
  value: /etc/lammps-stream-tls/ca/{{ .ca.key }}
{{- end }}
{{- if .client.existingSecret }}
- name: LAMMPS_STREAM_KAFKA_SSL_CERTFILE
  value: /etc/lammps-stream-tls/client/{{ .client.certKey }}
- name: LAMMPS_STREAM_KAFKA_SSL_KEYFILE
  value: /etc/lammps-stream-tls/client/{{ .client.keyKey }}
{{- end }}
{{- end }}
{{- if and .service $root.Values.secrets.apiToken.existingSecret }}
- name: {{ $root.Values.secrets.apiToken.env }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.apiToken.existingSecret }}
      key: {{ $root.Values.secrets.apiToken.key }}
{{- end }}
{{- $signing := include "lammps-stream.snapshotKeySecret" $root }}
{{- if and .service $signing }}
- name: {{ $root.Values.secrets.snapshotKey.env }}
  valueFrom:
    secretKeyRef:
      name: {{ $signing }}
      key: {{ $root.Values.secrets.snapshotKey.key }}
{{- end }}
{{- end -}}

{{/* The Kafka login (secrets.kafka or secrets.clientKafka, as JSON) of a pod: the service's
for the Deployment and the topics Job, the client's for the producers when it names a
Secret. Takes (dict "root" $ "client" bool). */}}
{{- define "lammps-stream.kafkaLogin" -}}
{{- $secrets := .root.Values.secrets -}}
{{- if and .client $secrets.clientKafka.existingSecret -}}
{{- toJson $secrets.clientKafka -}}
{{- else -}}
{{- toJson $secrets.kafka -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the snapshot signing key: the one named, else the chart's own (when
secrets.snapshotKey.create), else "" (each pod then signs with a key of its own). */}}
{{- define "lammps-stream.snapshotKeySecret" -}}
{{- with .Values.secrets.snapshotKey }}
{{- if .existingSecret }}
{{- .existingSecret }}
{{- else if .create }}
{{- printf "%s-snapshot-key" (include "lammps-stream.fullname" $) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "lammps-stream.volumeMounts" -}}
- name: config
  mountPath: /etc/lammps-stream
  readOnly: true
- name: state
  mountPath: /var/lib/lammps-stream
- name: tmp
  mountPath: /tmp
{{- if .Values.secrets.tls.ca.existingSecret }}
- name: kafka-ca
  mountPath: /etc/lammps-stream-tls/ca
  readOnly: true
{{- end }}
{{- if .Values.secrets.tls.client.existingSecret }}
- name: kafka-client-cert
  mountPath: /etc/lammps-stream-tls/client
  readOnly: true
{{- end }}
{{- end -}}

{{- define "lammps-stream.volumes" -}}
- name: config
  configMap:
    name: {{ include "lammps-stream.fullname" . }}-config
- name: state
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- with .Values.secrets.tls.ca }}
{{- if .existingSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - {key: {{ .key }}, path: {{ .key }}}
{{- end }}
{{- end }}
{{- with .Values.secrets.tls.client }}
{{- if .existingSecret }}
- name: kafka-client-cert
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - {key: {{ .certKey }}, path: {{ .certKey }}}
      - {key: {{ .keyKey }}, path: {{ .keyKey }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* Values that contradict each other, refused with the value to change. */}}
{{- define "lammps-stream.checks" -}}
{{- $tls := .Values.secrets.tls -}}
{{- $protocol := .Values.config.kafka.security_protocol | default "PLAINTEXT" -}}
{{- if and (or $tls.ca.existingSecret $tls.client.existingSecret) (not (has $protocol (list "SSL" "SASL_SSL"))) -}}
{{- fail (printf "secrets.tls: a TLS Secret is named but config.kafka.security_protocol is %s; set it to SSL or SASL_SSL" $protocol) -}}
{{- end -}}
{{- if hasPrefix "SASL" $protocol -}}
{{- /* Every pod logs in: the service and the topics Job with secrets.kafka, the producers
with secrets.clientKafka when it names a Secret (else secrets.kafka too). Each login a
rendered pod uses needs a username and a password, or the pods start and crash on
"kafka.sasl_username / kafka.sasl_password: both are needed". */ -}}
{{- $logins := list -}}
{{- $producers := or .Values.jobs.indexed.enabled .Values.jobs.mpi.enabled -}}
{{- if or .Values.service.enabled .Values.topics.create (and $producers (not .Values.secrets.clientKafka.existingSecret)) -}}
{{- $logins = append $logins (list "secrets.kafka" .Values.secrets.kafka) -}}
{{- end -}}
{{- if .Values.secrets.clientKafka.existingSecret -}}
{{- $logins = append $logins (list "secrets.clientKafka" .Values.secrets.clientKafka) -}}
{{- end -}}
{{- range $logins -}}
{{- $where := index . 0 -}}
{{- $login := index . 1 -}}
{{- $env := $login.env | default dict -}}
{{- if not $login.existingSecret -}}
{{- fail (printf "%s.existingSecret: config.kafka.security_protocol is %s, which logs in with a SCRAM username and password, but no Secret holds them; name the Secret (e.g. the one Strimzi's User Operator makes for a KafkaUser) and set %s.username, or use security_protocol PLAINTEXT or SSL" $where $protocol $where) -}}
{{- end -}}
{{- if not (get $env "LAMMPS_STREAM_KAFKA_SASL_PASSWORD") -}}
{{- fail (printf "%s.env: config.kafka.security_protocol is %s but no key of the Secret %s is given as LAMMPS_STREAM_KAFKA_SASL_PASSWORD (e.g. LAMMPS_STREAM_KAFKA_SASL_PASSWORD: password)" $where $protocol $login.existingSecret) -}}
{{- end -}}
{{- if not (or $login.username (get $env "LAMMPS_STREAM_KAFKA_SASL_USERNAME")) -}}
{{- fail (printf "%s.username: config.kafka.security_protocol is %s but the login has no username; set %s.username (a Strimzi KafkaUser's name), or map LAMMPS_STREAM_KAFKA_SASL_USERNAME to a key of the Secret %s in %s.env" $where $protocol $where $login.existingSecret $where) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A value as text in an expression, a command or a properties line: numbers in full. Helm
reads every number of a values file as a float, which Go prints as 1.2096e+06 from a million
up; JSON prints it as 1209600. Strings and booleans as they are. */}}
{{- define "lammps-stream.text" -}}
{{- if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- toJson . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* lammps-stream.yaml as the pods read it: .Values.config. The Deployment's checksum covers
this and nothing else of the ConfigMap, so a new plan never restarts the service. */}}
{{- define "lammps-stream.configFile" -}}
# Rendered by the lammps-stream chart from .Values.config; the pods add LAMMPS_STREAM_*
# variables for service.http_host, stack.* and producer.spool_dir/jobs_dir.
{{ toYaml .Values.config }}
{{- end -}}

{{/* The plan every producer variant runs: jobs.plan (a plans.jsonl) or one line per jobs.runs
entry. Fails, naming the value, when neither is given or a line is not a planned run. */}}
{{- define "lammps-stream.planLines" -}}
{{- $lines := list -}}
{{- if .Values.jobs.plan -}}
{{- range $i, $line := splitList "\n" (trim .Values.jobs.plan) -}}
{{- $run := fromJson $line -}}
{{- if or (hasKey $run "Error") (not (hasKey $run "params")) (not (hasKey $run "run_id")) -}}
{{- fail (printf "jobs.plan: line %d is not a planned run (a JSON object with run_id, split, params, as `lammps-stream submit ... --print` writes): %s" (add1 $i) $line) -}}
{{- end -}}
{{- $lines = append $lines (trim $line) -}}
{{- end -}}
{{- else -}}
{{- $seen := dict -}}
{{- range $run := .Values.jobs.runs -}}
{{- $params := dict "deck" $run.deck "x" (int ($run.x | default 1)) "y" (int ($run.y | default 1)) "z" (int ($run.z | default 1)) "steps" (int $run.steps) "ranks" (int $run.ranks) "threads" (int ($run.threads | default 1)) -}}
{{- $split := $run.split | default "train" -}}
{{- $runId := $run.run_id -}}
{{- if not $runId -}}
{{- /* the how-manieth entry without run_id of this split and params (lammps-stream.runId) */ -}}
{{- $key := dict "split" $split "params" $params | toJson -}}
{{- $occurrence := int (get $seen $key | default 0) -}}
{{- $_ := set $seen $key (add1 $occurrence) -}}
{{- $runId = include "lammps-stream.runId" (dict "root" $ "occurrence" $occurrence "run" (dict "split" $split "params" $params)) -}}
{{- end -}}
{{- $lines = append $lines (dict "run_id" $runId "split" $split "params" $params | toJson) -}}
{{- end -}}
{{- end -}}
{{- if not $lines -}}
{{- fail "jobs: a producer job is enabled but there is nothing to run; give jobs.runs (a list of runs) or jobs.plan (--set-file jobs.plan=plans.jsonl)" -}}
{{- end -}}
{{- toJson $lines -}}
{{- end -}}
