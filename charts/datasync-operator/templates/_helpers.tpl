{{/*
Names, labels and derived settings shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "datasync-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, else <release>-<name>, else <release>
when the release name already contains the chart name. Truncated to 63 characters (DNS labels).
*/}}
{{- define "datasync-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: <name>-<version> */}}
{{- define "datasync-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels every resource carries (Kubernetes recommended labels, then commonLabels). */}}
{{- define "datasync-operator.labels" -}}
helm.sh/chart: {{ include "datasync-operator.chart" . }}
{{ include "datasync-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: datasync-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels that select the operator's pods (immutable in a Deployment: keep them stable). */}}
{{- define "datasync-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datasync-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "datasync-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "datasync-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: [registry/]repository@digest, else [registry/]repository:tag (the tag
defaults to appVersion). image.registry replaces nothing in repository: it is put in front.
*/}}
{{- define "datasync-operator.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's configuration as environment variables, shared by the operator's container and
the `helm test` pod (whose `datasync-operator doctor` reads the same variables).
*/}}
{{- define "datasync-operator.scopeEnv" -}}
{{- $namespaces := include "datasync-operator.watchedNamespaces" . | fromJsonArray }}
{{- $leaderElection := include "datasync-operator.leaderElection" . -}}
# The pod's namespace (the release namespace): where the Lease lives.
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if .Values.watch.allNamespaces }}
- name: DATASYNC_OPERATOR_ALL_NAMESPACES
  value: "true"
{{- else }}
- name: DATASYNC_OPERATOR_NAMESPACES
  value: {{ join "," $namespaces | quote }}
{{- end }}
- name: DATASYNC_OPERATOR_STANDALONE
  value: {{ ternary "false" "true" (eq $leaderElection "true") | quote }}
{{- if $leaderElection }}
- name: DATASYNC_OPERATOR_LEASE_NAME
  value: {{ include "datasync-operator.leaseName" . | quote }}
{{- end }}
{{- end }}

{{/*
The namespaces to watch when not watching all of them, as a JSON list (templates parse it with
fromJsonArray): watch.namespaces without duplicates, or the release namespace when it is empty.
Fails when both modes are asked for.
*/}}
{{- define "datasync-operator.watchedNamespaces" -}}
{{- if .Values.watch.allNamespaces }}
{{- if .Values.watch.namespaces }}
{{- fail "watch.namespaces is set but watch.allNamespaces is true: set watch.allNamespaces=false to watch only those namespaces" }}
{{- end }}
{{- list | toJson }}
{{- else if .Values.watch.namespaces }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
"true" when replicas elect a leader through a coordination.k8s.io Lease: asked for, or more than
one replica. Fails when the lease timings cannot work (the operator would refuse to start).
*/}}
{{- define "datasync-operator.leaderElection" -}}
{{- $election := .Values.leaderElection }}
{{- if not (and (lt (float64 $election.retryPeriod) (float64 $election.renewDeadline)) (lt (float64 $election.renewDeadline) (float64 $election.leaseDuration))) }}
{{- fail (printf "leaderElection needs retryPeriod < renewDeadline < leaseDuration, got %v < %v < %v" $election.retryPeriod $election.renewDeadline $election.leaseDuration) }}
{{- end }}
{{- if or $election.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The Lease's name (the release's full name); it lives in the release namespace. */}}
{{- define "datasync-operator.leaseName" -}}
{{- include "datasync-operator.fullname" . }}
{{- end }}

{{/*
RBAC rules the operator needs on the namespaced resources it serves, wherever it watches them
(a ClusterRole when watching all namespaces, a Role per namespace otherwise). Each rule says
which part of the operator uses it; nothing else is granted (no Secrets, no wildcards).
*/}}
{{- define "datasync-operator.operatorRules" -}}
# kopf lists and watches DataSyncExecutions (it writes nothing); the controller GETs one after a
# write conflict and LISTs them to forget objects deleted while the watch was away, and
# merge-patches metadata.finalizers (only for deletionPolicy: Cancel).
- apiGroups: ["datasync.operator.io"]
  resources: ["datasyncexecutions"]
  verbs: ["get", "list", "watch", "patch"]
# The controller writes status (conditions, retry, executionStatus) through the status subresource.
- apiGroups: ["datasync.operator.io"]
  resources: ["datasyncexecutions/status"]
  verbs: ["patch"]
# The controller posts core/v1 Events about DataSyncExecutions and patches them to coalesce
# repeats (count, lastTimestamp); it never reads or deletes them, nor uses events.k8s.io.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
