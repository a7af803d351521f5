"""Test layout: unit/ (fast, no servers), compose/ and kubernetes/ (rendering, real validators), e2e/ (the real
servers on loopback), kube/ (a real Kubernetes API server). Shared helpers live in support.py."""
