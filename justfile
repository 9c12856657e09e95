# shake's tasks. Each recipe wraps a script so that `just` is a convenience, never a requirement.

# List the recipes.
default:
    @just --list

# The main job end to end on throwaway local servers.
demo:
    scripts/demo

# Install what the tests need, run the lint gates and the whole suite.
test *ARGS:
    scripts/test {{ARGS}}

# Formatting, clippy and docs with warnings denied.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

# Benchmarks; results go into docs/performance.md.
bench:
    scripts/bench

# Fuzz one target for a while (needs cargo-fuzz: cargo install cargo-fuzz).
fuzz TARGET="resp_decoder" SECONDS="60":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{TARGET}} -- -max_total_time={{SECONDS}}
