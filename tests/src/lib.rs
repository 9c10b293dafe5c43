//! Test support: real redis-server processes, TLS material, a fault proxy.
