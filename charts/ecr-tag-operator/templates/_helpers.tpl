{{/* The chart name, or nameOverride. */}}
{{- define "ecr-tag-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: fullnameOverride, else release name + chart name (once). */}}
{{- define "ecr-tag-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ecr-tag-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecr-tag-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecr-tag-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ecr-tag-operator.labels" -}}
helm.sh/chart: {{ include "ecr-tag-operator.chart" . }}
{{ include "ecr-tag-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ecr-tag-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecr-tag-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
What the operator does with EcrImageTags and Events, the same whether granted cluster-wide
(ClusterRole) or per namespace (Role). docs/rbac.md gives the reason for each rule.
*/}}
{{- define "ecr-tag-operator.rules" -}}
- apiGroups: ["ecrtag.dev"]
  resources: ["ecrimagetags"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["ecrtag.dev"]
  resources: ["ecrimagetags/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
