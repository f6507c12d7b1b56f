{{- define "chamicore.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "chamicore.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "chamicore.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "chamicore.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "chamicore.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "chamicore.fullname" .)) -}}
{{- end -}}

{{/* The settings every service reads: the ConfigMap, the Secret, and the database URL's Secret. */}}
{{- define "chamicore.envFrom" -}}
- configMapRef:
    name: {{ include "chamicore.fullname" . }}
- secretRef:
    name: {{ include "chamicore.secretName" . }}
{{- if .Values.database.existingSecret }}
- secretRef:
    name: {{ .Values.database.existingSecret }}
{{- else }}
- secretRef:
    name: {{ include "chamicore.fullname" . }}-database
{{- end }}
{{- end -}}

{{- define "chamicore.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "chamicore.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
