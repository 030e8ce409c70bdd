"""The Kubernetes manifests, shipped in the wheel as `rediswq_cli.kube.manifests` for `rediswq job`.

This file only makes `k8s/` a regular package: `importlib.resources.files("rediswq_cli.kube.manifests")`
then finds the YAML files both in an installed wheel and in an editable install (a namespace package
fails there).
"""
