#!/usr/bin/env bash
# Apache Kafka for the local stack: a real single-node broker in KRaft mode on 127.0.0.1.
# Jars come from Maven Central through mvn (deploy/local/kafka/pom.xml) into .local/ (git-ignored);
# storage is formatted once; the Billstream topics are created with several partitions.
# Usage: kafka.sh fetch|start|stop|status|topics|tool CLASS ARGS...
set -euo pipefail
source "$(dirname "$0")/env.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
CONFIG="$STATE_DIR/kafka-server.properties"
ADMIN_CONFIG="$STATE_DIR/kafka-admin.properties"  # for the readiness probe's tool runs
TOPIC_LIST="$RUN_DIR/kafka-topics.list"  # what the readiness probe listed, for topics()
PIDFILE="$RUN_DIR/kafka.pid"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

java_run() {  # java_run MAIN-CLASS ARGS...: run a class from the fetched jars
  java -Xms128m -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

fetch() {
  if [[ -f $KAFKA_LIBS/.complete ]]; then return 0; fi
  command -v java >/dev/null || { log "Java 17+ is required"; exit 1; }
  if ! command -v mvn >/dev/null; then
    log "installing Maven from the OS packages"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven >/dev/null
  fi
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central"
  mvn -q -B -Dstyle.color=never -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -DoutputDirectory="$KAFKA_LIBS" >"$LOG_DIR/mvn.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/mvn.log"; exit 1; }
  touch "$KAFKA_LIBS/.complete"
}

write_config() {
  cat >"$CONFIG" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=$TOPIC_PARTITIONS
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a kill -9 the restarted broker cannot register until the controller has expired the
# session of the dead one (broker.session.timeout.ms, 9 s by default): it serves nothing until then.
# 5 s, with a heartbeat every second, still rides out a 4 s stall of a loaded machine.
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=1000
log.retention.hours=-1
CONF
  # A tool run against a broker that is not serving yet waits up to default.api.timeout.ms (60 s)
  # before failing: the readiness probe would then see the broker a minute late.
  printf 'request.timeout.ms=3000\ndefault.api.timeout.ms=5000\n' >"$ADMIN_CONFIG"
}

# Alive, and not a zombie (after kill -9 one can linger, and kill -0 still succeeds).
running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && [[ $(ps -o stat= -p "$(cat "$PIDFILE")") != Z* ]]; }

# The port first (a JVM per try costs seconds), then a listing, kept for topics().
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; }
broker_ready() {
  port_open && java_run org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$ADMIN_CONFIG" --list >"$TOPIC_LIST"
}

start() {
  fetch
  if running; then log "Kafka already running on :$KAFKA_PORT"; return 0; fi
  write_config
  if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
    log "formatting KRaft storage in $KAFKA_DATA"
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" \
      -c "$CONFIG" >/dev/null
  fi
  nohup java -Xms256m -Xmx512m -XX:+UseG1GC -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$CONFIG" >>"$LOG_DIR/kafka.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_for "Kafka on :$KAFKA_PORT" 90 broker_ready || { tail -n 30 "$LOG_DIR/kafka.log"; exit 1; }
  log "Kafka $KAFKA_VERSION (KRaft) started on :$KAFKA_PORT"
  topics "$(cat "$TOPIC_LIST")"
}

topics() {  # topics [LISTING]: create the missing ones (listing them first unless given)
  local existing; existing=${1-$(java_run org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --list)}
  for topic in "${TOPICS[@]}"; do
    grep -qx "$topic" <<<"$existing" && continue
    java_run org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
      --topic "$topic" --partitions "$TOPIC_PARTITIONS" --replication-factor 1 >/dev/null
  done
  log "topics ready: ${TOPICS[*]} ($TOPIC_PARTITIONS partitions each)"
}

stop() {
  if running; then
    kill "$(cat "$PIDFILE")"
    wait_for "Kafka to stop" 60 bash -c "! kill -0 $(cat "$PIDFILE")" || kill -9 "$(cat "$PIDFILE")" || true
    log "Kafka stopped"
  fi
  rm -f "$PIDFILE"
}

status() { running && echo "kafka running (pid $(cat "$PIDFILE"))" || { echo "kafka stopped"; return 1; }; }

# Any Kafka tool, e.g.: kafka.sh tool org.apache.kafka.tools.consumer.ConsoleConsumer \
#   --bootstrap-server 127.0.0.1:59092 --topic billing.invoices --from-beginning
tool() { java_run "$@"; }

cmd=${1:-start}; shift || true
"$cmd" "$@"
