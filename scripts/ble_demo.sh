#!/usr/bin/env bash
# The BLE leg of `make demo`: a virtual radio (its own process), the hub daemon on it (its own
# process, simulated sensors), and the gateway pairing with the hub's passkey, syncing every
# record into the clinic store and reading the hub's status.
# Usage: scripts/ble_demo.sh DEMO_OUT VENV   (ports: BLE_DEMO_PORT, BLE_DEMO_PORT+1)
set -euo pipefail
OUT=$(realpath "$1"); CERVICAL="$(realpath "$2")/bin/cervical"
PORT=${BLE_DEMO_PORT:-9101}; GW_PORT=$((PORT + 1))
HUB_DIR="$OUT/hub-ble"
rm -rf "$HUB_DIR" "$OUT/gateway" "$OUT/clinic.db"*
mkdir -p "$HUB_DIR"
cp deploy/profile.example.toml "$HUB_DIR/profile.toml"
cp "$OUT/hub.db" "$HUB_DIR/hub.db"  # what `edge replay` recorded: the hub's day to sync
cat > "$HUB_DIR/hub.toml" <<TOML
[hub]
database = "hub.db"
models = "models"
public_key = "$OUT/signing.pub"
profile = "profile.toml"
realtime = false
[sensors]
head = "sim:seed=3,restrict=right_rotation+left_bend"
trunk = "sim:seed=3,restrict=right_rotation+left_bend"
[ble]
transport = "tcp-client:127.0.0.1:$PORT"
state_dir = "ble"
name = "Cervical demo hub"
advertising_interval_ms = 20.0
TOML
"$CERVICAL" edge install "$OUT/bundle" --config "$HUB_DIR/hub.toml"

"$CERVICAL" radio serve --port "$PORT" --port "$GW_PORT" & RADIO=$!
HUB=""
trap 'kill $HUB $RADIO 2>/dev/null || true' EXIT
sleep 1
"$CERVICAL" edge run --config "$HUB_DIR/hub.toml" 2> "$HUB_DIR/hub.log" & HUB=$!
for _ in $(seq 100); do [ -f "$HUB_DIR/ble/identity.json" ] && break; sleep 0.2; done
IDENTITY=$("$CERVICAL" edge ble-identity --config "$HUB_DIR/hub.toml")
echo "$IDENTITY"
ADDRESS=$(echo "$IDENTITY" | awk '/^address:/ {print $2}')
PASSKEY=$(echo "$IDENTITY" | awk '/^passkey:/ {print $2}')
for _ in $(seq 100); do grep -q "all sensors ended" "$HUB_DIR/hub.log" && break; sleep 0.2; done
GATEWAY=(--radio "bumble:tcp-client:127.0.0.1:$GW_PORT" --state-dir "$OUT/gateway")
"$CERVICAL" gateway sync --device "$ADDRESS" --passkey "$PASSKEY" --store "$OUT/clinic.db" \
    "${GATEWAY[@]}"
"$CERVICAL" gateway status --device "$ADDRESS" "${GATEWAY[@]}"  # bonded: no passkey needed
kill -TERM $HUB; wait $HUB
echo "clinic store: $OUT/clinic.db; hub log: $HUB_DIR/hub.log"
