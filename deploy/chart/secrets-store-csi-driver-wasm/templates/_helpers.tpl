{{/*
Names, labels, images, and the providers configuration shared by the templates.
*/}}

{{- define "sscw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already contains the chart name. */}}
{{- define "sscw.fullname" -}}
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

{{/* The DaemonSet's selector is immutable, so it holds only labels that never change. */}}
{{- define "sscw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sscw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sscw.labels" -}}
{{ include "sscw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sscw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sscw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference from {repository, tag, digest}; a digest wins over the tag. */}}
{{- define "sscw.image" -}}
{{- $img := index . 0 -}}
{{- $defaultTag := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $defaultTag $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* Paths inside the driver container (not on the node). */}}
{{- define "sscw.providersMountPath" -}}/etc/secrets-store-wasm/providers{{- end -}}
{{- define "sscw.artifactCachePath" -}}/var/lib/secrets-store-wasm/cache{{- end -}}
{{- define "sscw.caMountPath" -}}/etc/secrets-store-wasm/ca{{- end -}}
{{- define "sscw.pluginDir" -}}{{ .Values.linux.kubeletRootDir }}/plugins/csi-secrets-store{{- end -}}

{{- define "sscw.metricsPort" -}}
{{- $port := regexFind "[0-9]+$" (toString .Values.linux.metricsAddr) -}}
{{- if not $port -}}
{{- fail (printf "linux.metricsAddr %q: expected [host]:port, for example \":8095\"" (toString .Values.linux.metricsAddr)) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/*
The enabled providers, validated, as a YAML map: name -> {policy..., moduleFile, configMap?, hostFiles}.
Every template that needs the providers goes through here, so validation happens once, the same way.
*/}}
{{- define "sscw.providers" -}}
{{- $out := dict -}}
{{- range $name, $p := .Values.providers -}}
{{- if not (kindIs "map" $p) -}}
{{- fail (printf "providers.%s: expected a map with module, allowedHosts, ..." $name) -}}
{{- end -}}
{{- if ne (toString (get $p "enabled")) "false" -}}
{{- if not (regexMatch "^[a-zA-Z0-9_-]{1,30}$" $name) -}}
{{- fail (printf "providers.%s: a provider name is 1 to 30 letters, digits, '-' or '_' (it is the SecretProviderClass spec.provider)" $name) -}}
{{- end -}}
{{- $module := get $p "module" | default dict -}}
{{- $cm := get $module "configMap" | default dict -}}
{{- $entry := dict -}}
{{- if get $cm "name" -}}
{{- $key := get $cm "key" -}}
{{- if not $key -}}
{{- fail (printf "providers.%s.module.configMap.key: name the ConfigMap key that holds the module" $name) -}}
{{- end -}}
{{- $file := printf "%s.wasm" $name -}}
{{- if hasSuffix ".gz" $key -}}
{{- $file = printf "%s.wasm.gz" $name -}}
{{- end -}}
{{- $optional := true -}}
{{- if eq (toString (get $cm "optional")) "false" -}}
{{- $optional = false -}}
{{- end -}}
{{- $_ := set $entry "configMap" (dict "name" (get $cm "name") "key" $key "optional" $optional) -}}
{{- $_ := set $entry "moduleFile" $file -}}
{{- else if get $module "path" -}}
{{- $path := get $module "path" -}}
{{- if not (hasPrefix "/" $path) -}}
{{- fail (printf "providers.%s.module.path %q: must be an absolute path inside the driver image" $name $path) -}}
{{- end -}}
{{- $_ := set $entry "moduleFile" $path -}}
{{- else -}}
{{- fail (printf "providers.%s.module: set path (a module in the driver image) or configMap.name and configMap.key" $name) -}}
{{- end -}}
{{- $hostFiles := list -}}
{{- $hostMounts := list -}}
{{- range $i, $f := (get $p "hostFiles" | default list) -}}
{{- $path := $f -}}
{{- if kindIs "map" $f -}}
{{- $path = get $f "path" -}}
{{- if get $f "hostPath" -}}
{{- $hostMounts = append $hostMounts (dict "path" $path "hostPath" (get $f "hostPath") "type" (get $f "type" | default "File")) -}}
{{- end -}}
{{- end -}}
{{- if not (and (kindIs "string" $path) (hasPrefix "/" $path)) -}}
{{- fail (printf "providers.%s.hostFiles[%d]: expected an absolute path, or {path, hostPath, type}" $name $i) -}}
{{- end -}}
{{- $hostFiles = append $hostFiles $path -}}
{{- end -}}
{{- $_ := set $entry "hostFiles" $hostFiles -}}
{{- $_ := set $entry "hostMounts" $hostMounts -}}
{{- $_ := set $entry "policy" (omit $p "enabled" "module" "hostFiles") -}}
{{- $_ := set $out $name $entry -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* providers.yaml, the driver's policy file (host/runtime PolicySpec per provider, plus `module`). */}}
{{- define "sscw.providersYaml" -}}
{{- $providers := include "sscw.providers" . | fromYaml -}}
{{- $doc := dict -}}
{{- range $name, $e := $providers -}}
{{- $spec := deepCopy $e.policy -}}
{{- $_ := set $spec "module" $e.moduleFile -}}
{{- if $e.hostFiles -}}
{{- $_ := set $spec "hostFiles" $e.hostFiles -}}
{{- end -}}
{{- $_ := set $doc $name $spec -}}
{{- end -}}
# Written by the secrets-store-csi-driver-wasm chart from its `providers` values.
{{ toYaml (dict "providers" $doc) }}
{{- end -}}

{{/* Node files mounted for providers' hostFiles, one per container path. */}}
{{- define "sscw.hostFileMounts" -}}
{{- $providers := include "sscw.providers" . | fromYaml -}}
{{- $byPath := dict -}}
{{- range $name, $e := $providers -}}
{{- range $m := $e.hostMounts -}}
{{- $seen := get $byPath $m.path -}}
{{- if and $seen (or (ne $seen.hostPath $m.hostPath) (ne $seen.type $m.type)) -}}
{{- fail (printf "providers.%s.hostFiles: %s is mounted from two different node files" $name $m.path) -}}
{{- end -}}
{{- $_ := set $byPath $m.path $m -}}
{{- end -}}
{{- end -}}
{{- $list := list -}}
{{- range $i, $path := keys $byPath | sortAlpha -}}
{{- $m := get $byPath $path -}}
{{- $list = append $list (dict "name" (printf "host-file-%d" $i) "path" $path "hostPath" $m.hostPath "type" $m.type) -}}
{{- end -}}
{{- toYaml (dict "mounts" $list) -}}
{{- end -}}
