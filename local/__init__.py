"""What runs on one machine around the client and the server: the tritonserver and redis-server
launchers, the sample data, the demo, and where the repository keeps built files. The demo, the
tests and the benchmarks all start their services from here; neither the client library nor the
served models import it."""
