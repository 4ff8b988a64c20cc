#!/usr/bin/env bash
# The one HTTP origin (default :3000): nginx from the OS packages, routing each path to the
# service that owns it and giving every request a correlation id.
# Usage: nginx.sh start|stop|reload
set -euo pipefail
source "$(dirname "$0")/env.sh"
NGINX_DIR="$STATE_DIR/nginx"
CONF="$NGINX_DIR/nginx.conf"
PIDFILE="$RUN_DIR/nginx.pid"

install_if_missing() {
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] && return 0
  log "installing nginx from the OS packages"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

upstream() { echo "upstream $1 { server 127.0.0.1:${SERVICE_PORT[$1]}; keepalive 16; }"; }

write_config() {
  mkdir -p "$NGINX_DIR/tmp"
  local user_line=""
  [[ $(id -u) -eq 0 ]] && user_line="user root;"
  cat >"$CONF" <<CONF
$user_line
worker_processes 1;
pid $PIDFILE;
error_log $LOG_DIR/nginx-error.log warn;
events { worker_connections 1024; }
http {
  # No secret in the access log: the path without its query (sig=, signature=) and the checkout
  # token of /pay/<token> replaced; no headers (Authorization) at all.
  map \$uri \$logged_uri {
    ~^(?<keep>/pay/invoice/[^/]+) \$keep;
    ~^/pay/[^/]+(?<rest>.*)\$ /pay/[redacted]\$rest;
    default \$uri;
  }
  log_format redacted '\$remote_addr [\$time_local] "\$request_method \$logged_uri" \$status '
                      '\$body_bytes_sent \$request_time \$http_x_correlation_id';
  access_log $LOG_DIR/nginx-access.log redacted;
  client_body_temp_path $NGINX_DIR/tmp/body;
  proxy_temp_path $NGINX_DIR/tmp/proxy;
  fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
  uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
  scgi_temp_path $NGINX_DIR/tmp/scgi;
  client_max_body_size 2m;

  $(upstream invoicing)
  $(upstream payments)
  $(upstream dunning)
  $(upstream webhooks)

  # Keep the caller's correlation id, or start one from nginx's request id.
  map \$http_x_correlation_id \$correlation_id { "" \$request_id; default \$http_x_correlation_id; }

  server {
    listen 127.0.0.1:$GATEWAY_PORT;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Correlation-Id \$correlation_id;
    proxy_read_timeout 60s;
    default_type application/json;

    # Paths under /api/invoices and /api/customers that other services own.
    location ~ ^/api/invoices/[^/]+/(checkout|collect|refund)\$ { proxy_pass http://payments; }
    location ~ ^/api/invoices/[^/]+/(dunning|stop-dunning)\$ { proxy_pass http://dunning; }
    location ~ ^/api/customers/[^/]+/payments\$ { proxy_pass http://payments; }

    location /api/invoices      { proxy_pass http://invoicing; }
    location /api/customers     { proxy_pass http://invoicing; }
    location /api/credit-notes  { proxy_pass http://invoicing; }
    location /api/tenants       { proxy_pass http://invoicing; }
    location /api/plans         { proxy_pass http://invoicing; }
    location /api/subscriptions { proxy_pass http://invoicing; }
    location /api/payments      { proxy_pass http://payments; }
    location /api/payment-methods   { proxy_pass http://payments; }
    location /api/payment-providers { proxy_pass http://payments; }
    location /pay/              { proxy_pass http://payments; }
    location /webhooks/         { proxy_pass http://payments; }
    location /api/dunning       { proxy_pass http://dunning; }
    location /api/test-clocks   { proxy_pass http://dunning; }
    location /api/webhook-endpoints   { proxy_pass http://webhooks; }
    location /api/webhook-deliveries  { proxy_pass http://webhooks; }
    location /api/events        { proxy_pass http://webhooks; }

    location = /health { return 200 '{"status":"ok","service":"gateway"}'; }
    location / {
      return 404 '{"error":{"type":"invalid_request_error","code":"not_found","message":"No such path","field":null}}';
    }
  }
}
CONF
}

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  install_if_missing
  write_config
  "$(nginx_bin)" -t -q -c "$CONF" -p "$NGINX_DIR" 2>>"$LOG_DIR/nginx-error.log"
  if running; then
    "$(nginx_bin)" -c "$CONF" -p "$NGINX_DIR" -s reload
    log "gateway reloaded on :$GATEWAY_PORT"
  else
    "$(nginx_bin)" -c "$CONF" -p "$NGINX_DIR"
    wait_for "gateway on :$GATEWAY_PORT" 10 curl -sf "http://127.0.0.1:$GATEWAY_PORT/health"
    log "gateway (nginx $("$(nginx_bin)" -v 2>&1 | sed 's|.*/||')) listening on http://localhost:$GATEWAY_PORT"
  fi
}

stop() {
  if running; then
    "$(nginx_bin)" -c "$CONF" -p "$NGINX_DIR" -s quit || kill "$(cat "$PIDFILE")"
    log "gateway stopped"
  fi
}

"${1:-start}"
