# Shared by the benchmarks: the server runs as deployed by default (embedded identity), and the
# load carries a real token, so the numbers include authentication.

# bench_bootstrap BIN DATA_DIR: creates the admin user (password "bench-admin").
bench_bootstrap() {
  VELA_IDENTITY_PASSWORD=bench-admin "$1" --data-dir "$2" identity bootstrap >/dev/null 2>&1
}

# bench_token URL: an admin token, project-scoped.
bench_token() {
  curl -sf -D - -o /dev/null -X POST "$1/v3/auth/tokens?nocatalog" -H 'Content-Type: application/json' \
    -d '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin",
         "domain": {"id": "default"}, "password": "bench-admin"}}},
         "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}' |
    awk 'tolower($1) == "x-subject-token:" {print $2}' | tr -d '\r'
}
