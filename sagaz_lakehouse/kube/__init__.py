"""Talking to a Kubernetes API server: connection and errors (api), ownership and pruning (applyset),
rollout readiness and diagnosis (rollout), and host access to pods (portforward).

The kubernetes client is imported inside functions only, so the CLI's ``--help`` stays instant.
"""
