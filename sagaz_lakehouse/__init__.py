"""sagaz-lakehouse: stand up a streaming lakehouse (Fluss → Iceberg, Flink tiering, Trino) for saga analytics."""

__version__ = "0.1.0"
