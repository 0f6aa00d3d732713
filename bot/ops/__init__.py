"""Operations: the metrics port (/metrics, /livez, /readyz), the process and GPU gauges, data
retention and a member's deletion (forget)."""
