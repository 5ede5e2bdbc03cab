"""A throwaway redis-server, or a Redis Cluster of three, on loopback ports, for the demo, the
benchmarks and the tests.

In-memory only (`--save "" --appendonly no`): stopping it loses the cache, which is all a cache may
lose. Production points the client at its own Redis with REVIEWLENS_REDIS_URL.
"""
import shutil
import subprocess
import tempfile
import time

import redis

CLUSTER_SLOTS = 16384


class RedisServer:
    def __init__(self, port: int, extra_args: tuple[str, ...] = (), cwd: str | None = None):
        self.port = port
        self.extra_args = extra_args
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make setup` (it installs the Debian package)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             *self.extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.cwd)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RedisClusterServer:
    """A Redis Cluster of len(ports) masters (no replicas), the slots split evenly between them.

    Each node is a redis-server in cluster mode whose cluster state file lives in a temporary
    directory of this cluster; the nodes are joined with CLUSTER MEET and given their slots with
    CLUSTER ADDSLOTSRANGE, as `redis-cli --cluster create` would. bus_ports are the nodes' cluster
    bus ports (by default port + 10000, which a high free port would push past 65535).
    """

    def __init__(self, ports: list[int], bus_ports: list[int]):
        self.ports, self.bus_ports = ports, bus_ports
        self.nodes: list[RedisServer] = []
        self._folder: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, timeout: float = 20.0) -> "RedisClusterServer":
        self._folder = tempfile.TemporaryDirectory(prefix="reviewlens-redis-cluster-")
        try:
            for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
                cluster_mode = ("--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                                "--cluster-config-file", f"nodes-{port}.conf")
                self.nodes.append(RedisServer(port, cluster_mode, cwd=self._folder.name).start())
            per_node = -(-CLUSTER_SLOTS // len(self.ports))
            for i, port in enumerate(self.ports):
                client = redis.Redis(port=port)
                client.execute_command("CLUSTER ADDSLOTSRANGE", i * per_node, min(CLUSTER_SLOTS, (i + 1) * per_node) - 1)
                if i:
                    client.execute_command("CLUSTER MEET", "127.0.0.1", self.ports[0], self.bus_ports[0])
                client.close()
            deadline = time.monotonic() + timeout
            while not all(self._state(port) == "ok" for port in self.ports):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Redis Cluster on ports {self.ports} did not reach cluster_state:ok")
                time.sleep(0.1)
            return self
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _state(port: int) -> str:
        client = redis.Redis(port=port)
        try:
            return client.cluster("info")["cluster_state"]
        finally:
            client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self) -> "RedisClusterServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
