#!/usr/bin/env bash
# Makes sure the brokers the tests use are installed and running on 127.0.0.1:
#   - binaries the tests start privately: redis-server, nats-server;
#   - shared services: Mosquitto (1883, plus mosquitto_pub) and RabbitMQ (5672);
#   - the machine's PostgreSQL (5432, user postgres, trust auth; the PostgreSQL journal's
#     tests make and drop a database each with psql): its client is installed if missing,
#     a stopped cluster is started; the server itself is the machine's.
# Installs what is missing from Debian's packages and starts what is not listening.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v rabbitmq-server >/dev/null || [ -x /usr/sbin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v psql >/dev/null || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

if ! listening 1883; then
  echo "starting mosquitto"
  if [ -f /etc/mosquitto/mosquitto.conf ]; then mosquitto -d -c /etc/mosquitto/mosquitto.conf; else mosquitto -d -p 1883; fi
fi
if ! listening 5672; then
  echo "starting rabbitmq (about 10 s)"
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
fi
if ! listening 5432 && command -v pg_ctlcluster >/dev/null; then
  echo "starting postgresql"
  for c in /etc/postgresql/*/*; do
    [ -d "$c" ] && pg_ctlcluster "$(basename "$(dirname "$c")")" "$(basename "$c")" start || true
  done
fi
for _ in $(seq 1 120); do
  listening 1883 && listening 5672 && listening 5432 && break
  sleep 0.5
done
listening 1883 || { echo "mosquitto is not listening on 1883"; exit 1; }
listening 5672 || { echo "rabbitmq is not listening on 5672"; exit 1; }
listening 5432 || { echo "postgresql is not listening on 127.0.0.1:5432 (the PostgreSQL journal's tests need it, user postgres with trust auth)"; exit 1; }
psql -h 127.0.0.1 -U postgres -d postgres -qtAc 'SELECT 1' >/dev/null \
  || { echo "psql cannot connect to 127.0.0.1:5432 as postgres (trust auth expected)"; exit 1; }
echo "brokers ready: mosquitto :1883, rabbitmq :5672, postgresql :5432, redis-server and nats-server binaries present"
