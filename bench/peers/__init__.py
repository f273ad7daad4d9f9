"""Peers for bench/bench_peers.py: Prometheus (remote write) and InfluxDB 1.x (line protocol).

``remote_write`` and ``line_protocol`` are pure encoders of workload columns into the peers'
write formats; ``plan`` cuts one data set into the same requests for the three systems;
``queries`` turns the TSBS query instances of bench/bench_query.py into PromQL and InfluxQL
and checks the answers; ``systems`` starts and measures the servers (processes, CPU time,
bytes on disk). ``install.sh`` installs the peers from Debian's packages.
"""
