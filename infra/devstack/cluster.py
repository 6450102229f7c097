"""A private local RabbitMQ cluster (or a single private node) for fault tests.

The nodes (`pc1@localhost`, ...) have their own names, AMQP, distribution and management
ports, data and log directories under one base directory, and a HOME with an Erlang cookie of
their own, so nothing they do (or that is done to them) can reach the default node
`rabbit@<host>`. Each is an OS process started here and stopped by its PID: SIGTERM for a
clean stop, SIGKILL / SIGSTOP / SIGCONT for faults. Node 1 boots first; the others find it by
classic peer discovery and join it, as the deploy files describe for production.

    with LocalCluster(base_dir, size=3) as cluster:
        urls = cluster.amqp_urls("my-vhost")    # comma-join them for AMQP_URL
        cluster.kill(2)                         # SIGKILL of pc2's Erlang VM
        cluster.start_node(2)                   # rejoins with its data
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import httpx

from infra.devstack._util import DevstackError, log, tcp_open, wait_until
from infra.devstack.rabbitmq import Management

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
NODE_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class NodeSpec:
    index: int  # 1-based
    amqp_port: int
    dist_port: int
    management_port: int
    prefix: str = "pc"

    @property
    def name(self) -> str:
        return f"{self.prefix}{self.index}@localhost"


def node_specs(size: int, amqp_base: int = 5700, prefix: str = "pc") -> list[NodeSpec]:
    """Ports of node i: AMQP amqp_base+i, distribution 20000+that, management 10000+that
    (defaults: 5701.., 25701.., 15701..), never the default node's 5672/25672/15672."""
    specs = [
        NodeSpec(i, amqp_base + i, 20_000 + amqp_base + i, 10_000 + amqp_base + i, prefix)
        for i in range(1, size + 1)
    ]
    if any(s.amqp_port == 5672 for s in specs):
        raise ValueError("those ports are the default node's")
    return specs


# The deploy's broker settings that rabbitmq.conf cannot express, so that a private node
# forwards stranded retries out of the delay tiers as the deploy's nodes do.
ADVANCED_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "rabbitmq" / "advanced.config"


def node_config(spec: NodeSpec, peers: list[NodeSpec]) -> str:
    """rabbitmq.conf of one node: loopback listeners on its own ports, the cluster's peers."""
    lines = [
        f"listeners.tcp.1 = 127.0.0.1:{spec.amqp_port}",
        f"management.tcp.port = {spec.management_port}",
        "management.tcp.ip = 127.0.0.1",
        "loopback_users.guest = true",
        # The side that lost the majority stops serving instead of diverging.
        "cluster_partition_handling = pause_minority",
    ]
    if len(peers) > 1:
        lines.append("cluster_formation.peer_discovery_backend = classic_config")
        lines += [f"cluster_formation.classic_config.nodes.{p.index} = {p.name}" for p in peers]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ClusterManagement(Management):
    """The management API of whichever node answers: any node serves the whole cluster."""

    urls: tuple[str, ...] = ()

    def request(
        self, method: str, path: str, json: object = None, timeout_s: float = 60.0
    ) -> httpx.Response:
        error: httpx.HTTPError | None = None
        for url in self.urls or (self.url,):
            try:
                return httpx.request(
                    method, f"{url}/api{path}", json=json, auth=(self.user, self.password),
                    # A refused or frozen node is left at once; deleting a vhost full of
                    # quorum queues takes the cluster seconds.
                    timeout=httpx.Timeout(timeout_s, connect=2.0),
                )  # fmt: skip
            except httpx.HTTPError as failed:  # that node is down: the next one
                error = failed
        assert error is not None
        raise error


@dataclass
class RabbitNode:
    spec: NodeSpec
    base_dir: Path
    home: Path
    peers: list[NodeSpec]
    process: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> Path:
        return self.base_dir / self.spec.name.split("@")[0]

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    def env(self) -> dict[str, str]:
        """The node's (and its CLI's) environment; none of it names the default node."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/usr/lib/rabbitmq/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.spec.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.spec.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.spec.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            # Not /etc/rabbitmq/rabbitmq-env.conf, which names the default node.
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def write_files(self) -> None:
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(node_config(self.spec, self.peers))
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "advanced.config").write_text(ADVANCED_CONFIG.read_text())

    def start(self) -> None:
        if self.running:
            return
        self.pid_file.unlink(missing_ok=True)
        with (self.dir / "console.log").open("ab") as console:
            self.process = subprocess.Popen(
                [SERVER], env=self.env(), stdout=console, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.dir,
            )  # fmt: skip

    def wait_running(self, timeout_s: float = NODE_START_TIMEOUT_S) -> None:
        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise DevstackError(f"{self.spec.name} exited:\n{self.console_tail()}")
            return tcp_open("127.0.0.1", self.spec.amqp_port) and self.management.answering()

        wait_until(up, timeout_s, f"RabbitMQ node {self.spec.name}", interval=0.5)
        # The listeners open before the last boot steps end: a vhost created in that gap was
        # never started on this node, and the node creating it answered 500 after 48 s.
        self.ctl("await_startup", "--timeout", str(int(timeout_s)), timeout_s=timeout_s + 30)

    @property
    def management(self) -> Management:
        return Management(url=f"http://127.0.0.1:{self.spec.management_port}")

    @property
    def vm_pid(self) -> int | None:
        """PID of the node's Erlang VM (the server script is only its parent)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(self.pid_file.read_text().strip())
        return None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_vm(self, sig: signal.Signals) -> None:
        pid = self.vm_pid
        if pid is None:
            raise DevstackError(f"{self.spec.name} has no PID file")
        os.kill(pid, sig)

    def kill(self) -> None:
        """SIGKILL of the Erlang VM, then reap the server script around it."""
        self.signal_vm(signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def stop(self) -> None:
        """A clean stop (SIGTERM: the script runs `rabbitmqctl stop`), SIGKILL past a bound."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.signal_vm(signal.SIGCONT)  # a frozen VM cannot stop
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, DevstackError):
                    self.signal_vm(signal.SIGKILL)
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """`rabbitmqctl -n <this node> ...` with the cluster's own cookie."""
        try:
            result = subprocess.run(
                [CTL, "-n", self.spec.name, *args], env=self.env(), capture_output=True,
                text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired as error:
            raise DevstackError(f"rabbitmqctl {' '.join(args)} timed out") from error
        if result.returncode != 0:
            raise DevstackError(f"rabbitmqctl {' '.join(args)}: {result.stderr or result.stdout}")
        return result.stdout

    def console_tail(self, lines: int = 30) -> str:
        path = self.dir / "console.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LocalCluster:
    """`size` private nodes clustered together (size 1: a private single node)."""

    base_dir: Path
    size: int = 3
    amqp_base: int = 5700
    prefix: str = "pc"
    nodes: list[RabbitNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        specs = node_specs(self.size, self.amqp_base, self.prefix)
        home = self.base_dir / "home"
        self.nodes = [RabbitNode(s, self.base_dir, home, specs) for s in specs]

    def node(self, index: int) -> RabbitNode:
        return self.nodes[index - 1]

    def start(self) -> None:
        """Boot node 1, then the others, which join it; wait until every node is running
        and clustered. Any port already taken is an error (never someone else's node)."""
        for node in self.nodes:
            if tcp_open("127.0.0.1", node.spec.amqp_port):
                raise DevstackError(f"port {node.spec.amqp_port} is taken; not starting")
        self._write_cookie()
        for node in self.nodes:
            node.write_files()
        first, *others = self.nodes
        first.start()
        first.wait_running()
        for node in others:
            node.start()
        for node in others:
            node.wait_running()
        wait_until(self.formed, NODE_START_TIMEOUT_S, "the cluster to form", interval=1.0)
        log(f"RabbitMQ cluster {[n.spec.name for n in self.nodes]} running in {self.base_dir}")

    def formed(self) -> bool:
        response = self.any_management().request("GET", "/nodes")
        running = {n["name"] for n in response.json() if n.get("running")}
        return running >= {n.spec.name for n in self.nodes if n.running}

    def any_management(self) -> Management:
        """The management API of the first node that answers (node 1 may be the one down)."""
        for node in self.nodes:
            if node.running and node.management.answering():
                return node.management
        raise DevstackError("no node of the cluster answers its management API")

    @property
    def management(self) -> ClusterManagement:
        """A management client that asks the nodes in turn until one answers."""
        urls = tuple(n.management.url for n in self.nodes)
        return ClusterManagement(url=urls[0], urls=urls)

    def start_node(self, index: int) -> None:
        node = self.node(index)
        node.start()
        node.wait_running()
        wait_until(self.formed, NODE_START_TIMEOUT_S, f"{node.spec.name} to rejoin", interval=1.0)

    def kill(self, index: int) -> None:
        self.node(index).kill()

    def heal(self) -> None:
        """Thaw any frozen node and start any stopped one: three healthy nodes again."""
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(ProcessLookupError, DevstackError):
                    node.signal_vm(signal.SIGCONT)
            else:
                self.start_node(node.spec.index)

    def amqp_urls(self, vhost: str, user: str = "guest", password: str = "guest") -> list[str]:
        path = quote(vhost, safe="")
        return [f"amqp://{user}:{password}@127.0.0.1:{n.spec.amqp_port}/{path}" for n in self.nodes]

    def stop(self) -> None:
        """Stop every node this cluster started, by PID; the others are not ours."""
        for node in reversed(self.nodes):
            node.stop()

    def _write_cookie(self) -> None:
        home = self.nodes[0].home
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
