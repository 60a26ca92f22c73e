"""What a running worker or trainer shows: one report per batch (``report``), Prometheus
metrics (``metrics``), the fleet view behind the dashboard (``fleet``, ``dashboard/``), health
and readiness (``probes``) and the HTTP server for all of them (``server``)."""
