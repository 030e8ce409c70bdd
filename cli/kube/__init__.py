"""`rediswq job`: worker Jobs on Kubernetes (the kubernetes client is the optional extra `[kube]`)."""
