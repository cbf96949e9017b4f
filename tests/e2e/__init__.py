"""End-to-end tier: tests against a real etcd + kube-apiserver (see conftest.py)."""
