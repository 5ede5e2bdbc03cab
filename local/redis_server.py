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
    """A Redis Cluster of len(ports) masters, the slots split evenly between them, and optionally
    one replica per master (replicas[i] = (port, bus port) of master i's replica).

    Each node is a redis-server in cluster mode whose cluster state file lives in a temporary
    directory of this cluster; the nodes are joined with CLUSTER MEET, the masters given their
    slots with CLUSTER ADDSLOTSRANGE and the replicas attached with CLUSTER REPLICATE, as
    `redis-cli --cluster create --cluster-replicas 1` would. bus_ports are the masters' cluster bus
    ports (by default port + 10000, which a high free port would push past 65535). A master that
    stops is replaced by its replica after node_timeout_ms (Redis's default is 15 s).
    """

    def __init__(self, ports: list[int], bus_ports: list[int], replicas: list[tuple[int, int]] = (),
                 node_timeout_ms: int = 2000):
        self.ports, self.bus_ports = ports, bus_ports
        self.replicas = list(replicas)
        if len(self.replicas) not in (0, len(ports)):
            raise ValueError(f"give one replica per master ({len(ports)}) or none, not {len(self.replicas)}")
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []   # the masters, then the replicas
        self._folder: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def slots_per_master(self) -> int:
        return -(-CLUSTER_SLOTS // len(self.ports))

    def start(self, timeout: float = 20.0) -> "RedisClusterServer":
        self._folder = tempfile.TemporaryDirectory(prefix="reviewlens-redis-cluster-")
        every = list(zip(self.ports, self.bus_ports, strict=True)) + self.replicas
        try:
            for port, bus_port in every:
                cluster_mode = ("--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                                "--cluster-config-file", f"nodes-{port}.conf",
                                "--cluster-node-timeout", str(self.node_timeout_ms))
                self.nodes.append(RedisServer(port, cluster_mode, cwd=self._folder.name).start())
            per_node = self.slots_per_master
            for i, port in enumerate(self.ports):
                self._command(port, "CLUSTER ADDSLOTSRANGE", i * per_node, min(CLUSTER_SLOTS, (i + 1) * per_node) - 1)
            for port, _ in every[1:]:
                self._command(port, "CLUSTER MEET", "127.0.0.1", self.ports[0], self.bus_ports[0])
            self._wait(lambda: all(int(self._info(port)["cluster_known_nodes"]) == len(every) for port, _ in every),
                       timeout, "see each other")
            for (port, _), master in zip(self.replicas, self.ports):
                self._command(port, "CLUSTER REPLICATE", self._command(master, "CLUSTER MYID"))
            self._wait(lambda: all(self._replication(port).get("master_link_status") == "up" for port, _ in self.replicas),
                       timeout, "bring its replicas in sync")
            self._wait(lambda: all(self._info(port)["cluster_state"] == "ok" for port, _ in every),
                       timeout, "reach cluster_state:ok")
            return self
        except BaseException:
            self.stop()
            raise

    def wait_for_failover(self, master: int, timeout: float = 30.0) -> None:
        """Until master's replica has taken over (it needs node_timeout_ms to see the master gone)
        and every running node says cluster_state:ok again."""
        replica = self.replicas[master][0]
        self._wait(lambda: self._replication(replica)["role"] == "master", timeout, f"promote the replica {replica}")
        self._wait(lambda: all(self._info(n.port)["cluster_state"] == "ok" for n in self.nodes if n.process),
                   timeout, "reach cluster_state:ok after the failover")

    def master_of(self, key: str) -> int:
        """Index (in ports) of the master that held the key's slot when the cluster started."""
        return int(self._command(self.ports[0], "CLUSTER KEYSLOT", key)) // self.slots_per_master

    def _wait(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster on ports {self.ports} did not {what}")
            time.sleep(0.1)

    @staticmethod
    def _command(port: int, *args):
        client = redis.Redis(port=port, decode_responses=True)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    @staticmethod
    def _replication(port: int) -> dict:
        client = redis.Redis(port=port, decode_responses=True)
        try:
            return client.info("replication")
        finally:
            client.close()

    @staticmethod
    def _info(port: int) -> dict:
        client = redis.Redis(port=port)
        try:
            return client.cluster("info")
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
