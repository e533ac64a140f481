"""Apache Kafka in KRaft mode (one broker+controller), run with Java from Maven Central jars.

Install: a generated ``pom.xml`` lists ``org.apache.kafka:kafka_2.13`` and a log4j2 SLF4J
binding; ``mvn dependency:copy-dependencies`` puts the runtime classpath into the cache dir.
Prepare: ``kafka.tools.StorageTool format`` the log dir once. Health: a metadata request.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError
from headrace_dev.stack.component import Component, Log
from headrace_dev.stack.tools import require_tool, run_logged

__all__ = ["KAFKA_VERSION", "Kafka"]

KAFKA_VERSION = "4.2.0"
_PROBE_TOPIC = "__headrace_stack_probe"
LOG4J_VERSION = "2.25.3"  # the log4j-core version kafka 4.2.0 depends on

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.headrace_dev.stack</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass
class Kafka(Component):
    """Single-node KRaft broker on 127.0.0.1 (controller on ``port + 1``)."""

    name: str = "kafka"
    marker: str = "kafka.Kafka"
    start_timeout: float = 120.0

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def lib_dir(self) -> Path:
        return self.paths.cache / f"kafka-{KAFKA_VERSION}" / "lib"

    @property
    def conf_dir(self) -> Path:
        return self.paths.conf / "kafka"

    def install(self, log: Log) -> None:
        done = self.lib_dir.parent / ".complete"
        if done.exists():
            return
        _require_java()
        mvn = require_tool(
            "mvn", "downloading Kafka's jars from Maven Central", "apt-get install -y maven"
        )
        log(f"downloading Apache Kafka {KAFKA_VERSION} jars from Maven Central (first time only)")
        build = self.lib_dir.parent
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        (build / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
        run_logged(
            [
                mvn,
                "-B",
                "-q",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.lib_dir}",
                "-DincludeScope=runtime",
            ],
            log_file=self.paths.log_file("install"),
            what="mvn copy Kafka jars",
            cwd=build,
        )
        done.write_text(KAFKA_VERSION + "\n")

    def prepare(self, log: Log) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.conf_dir / "server.properties"
        props.write_text(self._server_properties())
        (self.conf_dir / "log4j2.properties").write_text(_LOG4J2)
        if (self.data_dir / "meta.properties").exists():
            return
        log("formatting Kafka storage (first start)")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        run_logged(
            [
                *self._java_cmd(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
            ],
            log_file=self.paths.log_file(self.name),
            what="Kafka storage format",
        )

    def _server_properties(self) -> str:
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            # No deletion by time: retention compares the newest *message timestamp* of a
            # segment with the clock, and sources stamp records with their event time, so a
            # backfill of 2024 events would be deleted within minutes (mid-test). Disk use is
            # bounded per partition instead.
            "log.retention.ms": "-1",
            "log.retention.bytes": str(1024 * 1024 * 1024),
            "log.segment.bytes": str(256 * 1024 * 1024),
        }
        return "".join(f"{k}={v}\n" for k, v in lines.items())

    def _java_cmd(self) -> list[str]:
        java = _require_java()
        return [
            java,
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.lib_dir}/*",
        ]

    def command(self) -> list[str]:
        return [*self._java_cmd(), "kafka.Kafka", str(self.conf_dir / "server.properties")]

    def healthy(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.endpoint(), "log_level": 0})
        md = admin.list_topics(timeout=3)
        return bool(md.brokers)

    def bootstrap(self, log: Log) -> None:
        """Make the group coordinator ready: commit one offset for a probe consumer group.

        A new cluster creates ``__consumer_offsets`` on the first FindCoordinator request; a
        client whose group starts during that window can lose its first commits (seen with
        Faust on a fresh stack). Committing once here means "ready" includes the coordinator.
        """
        from confluent_kafka import Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.endpoint(), "log_level": 0})
        futures = admin.create_topics([NewTopic(_PROBE_TOPIC, 1, 1)], operation_timeout=10)
        for fut in futures.values():
            try:
                fut.result(timeout=15)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
        consumer = Consumer(
            {
                "bootstrap.servers": self.endpoint(),
                "group.id": _PROBE_TOPIC,
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    consumer.commit(
                        offsets=[TopicPartition(_PROBE_TOPIC, 0, 0)], asynchronous=False
                    )
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        finally:
            consumer.close()

    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"HEADRACE_KAFKA_BOOTSTRAP": self.endpoint()}


def _require_java() -> str:
    java = require_tool("java", "running Kafka", "apt-get install -y openjdk-17-jre-headless")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major < 17:
        raise StackError(
            f"Kafka {KAFKA_VERSION} needs Java 17+, found: {out.splitlines()[0] if out else '?'}; "
            "fix: apt-get install -y openjdk-17-jre-headless, or put a newer java first on PATH"
        )
    return java
