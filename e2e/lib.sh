# Shared by the Keystone-mode e2e scripts (sourced, not run).

# Prints the `[auth]` tables of a Vela in Keystone mode, with the service user from
# scripts/keystone.sh (its KEYSTONE_* variables).
keystone_auth_toml() {
  cat <<TOML
[auth]
mode = "keystone"

[auth.keystone]
auth_url = "$KEYSTONE_URL"
username = "${KEYSTONE_SERVICE_USER:-vela}"
password = "${KEYSTONE_SERVICE_PASSWORD:-vela-secret}"
project_name = "${KEYSTONE_SERVICE_PROJECT:-service}"
TOML
}
