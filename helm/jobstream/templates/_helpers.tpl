{{/*
Names and labels.
*/}}
{{- define "jobstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobstream.fullname" -}}
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

{{- define "jobstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jobstream.labels" -}}
helm.sh/chart: {{ include "jobstream.chart" . }}
{{ include "jobstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobstream
{{- end -}}

{{- define "jobstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jobstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "jobstream.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the app's shutdown grace (rounded up) plus a margin, so
Kubernetes never SIGKILLs a worker that is still inside its own grace period or is
committing offsets / leaving the group right after it.
*/}}
{{- define "jobstream.terminationGracePeriodSeconds" -}}
{{- add (int (ceil .Values.worker.shutdownGraceSeconds)) (int .Values.worker.terminationGraceMarginSeconds) -}}
{{- end -}}

{{- define "jobstream.saslEnabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{- define "jobstream.tlsEnabled" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{/* Where the TLS Secret is mounted; config.yaml points librdkafka at files here. */}}
{{- define "jobstream.tlsDir" -}}/etc/jobstream/tls{{- end -}}
{{- define "jobstream.configDir" -}}/etc/jobstream/config{{- end -}}

{{/*
Checks that cannot be expressed in values.schema.json, failing with a clear message.
Included by every template that depends on them.
*/}}
{{- define "jobstream.validate" -}}
{{- if and .Values.keda.enabled .Values.hpa.enabled -}}
{{- fail "keda.enabled and hpa.enabled are mutually exclusive: KEDA creates its own HPA for the Deployment, and two autoscalers would fight over replicas. Enable only one." -}}
{{- end -}}
{{- if and (include "jobstream.saslEnabled" .) (not .Values.kafka.sasl.existingSecret) -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.existingSecret: the name of an existing Secret holding the SASL password (key kafka.sasl.passwordKey)." .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (include "jobstream.saslEnabled" .) (not .Values.kafka.sasl.usernameKey) (not .Values.kafka.sasl.username) -}}
{{- fail "SASL needs a username: set kafka.sasl.username, or kafka.sasl.usernameKey to read it from kafka.sasl.existingSecret." -}}
{{- end -}}
{{- if and .Values.kafka.tls.existingSecret (not (include "jobstream.tlsEnabled" .)) -}}
{{- fail "kafka.tls.existingSecret is set but kafka.securityProtocol is not SSL or SASL_SSL: the TLS material would be ignored." -}}
{{- end -}}
{{- if ne (empty .Values.kafka.tls.certKey) (empty .Values.kafka.tls.keyKey) -}}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together (mutual TLS needs both the client certificate and its key)." -}}
{{- end -}}
{{- if and .Values.hpa.enabled (not .Values.hpa.targetCPUUtilizationPercentage) (not .Values.hpa.externalMetric.enabled) -}}
{{- fail "hpa.enabled needs at least one metric: hpa.targetCPUUtilizationPercentage or hpa.externalMetric.enabled." -}}
{{- end -}}
{{- end -}}

{{/*
The settings file (JOBSTREAM_CONFIG). Only keys with a value are written, so the app's
own defaults apply to the rest. Secrets never appear here: they come in as env vars
from Secrets (env beats the YAML file in jobstream's settings precedence).
*/}}
{{- define "jobstream.config" -}}
{{- $v := .Values -}}
{{- $kafka := dict "bootstrap_servers" $v.kafka.bootstrapServers "client_id" (default (include "jobstream.fullname" .) $v.kafka.clientId) "security_protocol" $v.kafka.securityProtocol -}}
{{- if include "jobstream.saslEnabled" . -}}
{{- $_ := set $kafka "sasl_mechanism" $v.kafka.sasl.mechanism -}}
{{- /* sasl_username comes in as an env var (see jobstream.env), so KEDA can read it too. */ -}}
{{- end -}}
{{- if and (include "jobstream.tlsEnabled" .) $v.kafka.tls.existingSecret -}}
{{- $dir := include "jobstream.tlsDir" . -}}
{{- with $v.kafka.tls.caKey }}{{ $_ := set $kafka "ssl_ca_location" (printf "%s/%s" $dir .) }}{{ end -}}
{{- with $v.kafka.tls.certKey }}{{ $_ := set $kafka "ssl_certificate_location" (printf "%s/%s" $dir .) }}{{ end -}}
{{- with $v.kafka.tls.keyKey }}{{ $_ := set $kafka "ssl_key_location" (printf "%s/%s" $dir .) }}{{ end -}}
{{- end -}}
{{- with $v.kafka.extra }}{{ $_ := set $kafka "extra" . }}{{ end -}}
{{- /* http_host/http_port are env vars of the worker container instead: they must match
     its containerPort and probes, and env wins over this file (and over the image's env). */ -}}
{{- $worker := dict "group_id" $v.worker.groupId "mode" $v.worker.mode "max_in_flight" $v.worker.maxInFlight "shutdown_grace_s" $v.worker.shutdownGraceSeconds "assignment" $v.worker.assignment -}}
{{- $cfg := dict "kafka" $kafka "worker" $worker "log" (dict "level" $v.log.level "format" $v.log.format) -}}
{{- with $v.jobs }}{{ $_ := set $cfg "jobs" . }}{{ end -}}
{{- with $v.schemaDirs }}{{ $_ := set $cfg "schema_dirs" . }}{{ end -}}
{{- $cfg = mustMergeOverwrite $cfg (deepCopy $v.extraConfig) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Container env shared by the worker and the topics hook, so both see the same settings.
*/}}
{{- define "jobstream.env" -}}
- name: JOBSTREAM_CONFIG
  value: {{ printf "%s/config.yaml" (include "jobstream.configDir" .) | quote }}
- name: JOBSTREAM_APP
  value: {{ .Values.app | quote }}
{{- if include "jobstream.saslEnabled" . }}
- name: JOBSTREAM_KAFKA__SASL_USERNAME
{{- if .Values.kafka.sasl.usernameKey }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret | quote }}
      key: {{ .Values.kafka.sasl.usernameKey | quote }}
{{- else }}
  value: {{ .Values.kafka.sasl.username | quote }}
{{- end }}
- name: JOBSTREAM_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret | quote }}
      key: {{ .Values.kafka.sasl.passwordKey | quote }}
{{- end }}
{{- if and (include "jobstream.tlsEnabled" .) .Values.kafka.tls.existingSecret .Values.kafka.tls.keyPasswordKey }}
- name: JOBSTREAM_KAFKA__SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.tls.existingSecret | quote }}
      key: {{ .Values.kafka.tls.keyPasswordKey | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volume mounts shared by the worker and the topics hook. */}}
{{- define "jobstream.volumeMounts" -}}
- name: config
  mountPath: {{ include "jobstream.configDir" . }}
  readOnly: true
# The root filesystem is read-only; Python and librdkafka may still need scratch space.
- name: tmp
  mountPath: /tmp
{{- if and (include "jobstream.tlsEnabled" .) .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "jobstream.tlsDir" . }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Volumes shared by the worker and the topics hook.
Call with (dict "root" $ "configMap" <name>): the hook uses its own hook-managed copy of
the ConfigMap, because hook Jobs run before the release's regular resources exist.
*/}}
{{- define "jobstream.volumes" -}}
{{- $root := .root -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $root.Values.tmpSizeLimit }}
{{- if and (include "jobstream.tlsEnabled" $root) $root.Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $root.Values.kafka.tls.existingSecret | quote }}
    # Readable by the pod's fsGroup only; private keys must not be world-readable.
    defaultMode: 0440
{{- end }}
{{- with $root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
