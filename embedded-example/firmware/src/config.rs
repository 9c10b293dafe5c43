//! Everything a deployment changes, in one place, as constants: the firmware
//! has no file system or environment to read them from.

use embassy_time::Duration;
use resilis_embassy::net::Verify;

/// The Redis endpoint and credentials, in the same syntax as `REDIS_URL`:
/// `rediss://` for TLS (the seed's production failure was plaintext against
/// a TLS-only server), `redis://` for plain TCP. Query options: see
/// `resilis_core::config::URL_OPTIONS`.
pub const REDIS_URL: &str = "rediss://gateway:change-me@192.168.1.10:6380/0?client_name=gw-f767&ping_interval=5s&ping_timeout=5s";

/// The name in the server's certificate, when the URL's host is an IP address
/// (embedded-tls verifies DNS names only). `None`: the URL's host.
pub const TLS_SERVER_NAME: Option<&str> = Some("redis.example");

/// The CA that signed the server's certificate, DER, EC P-256. The file in
/// the repository is a placeholder CA whose key was thrown away: replace it
/// (`openssl x509 -in ca.pem -outform der -out certs/ca.der`).
/// `Verify::InsecureNoVerification` skips verification: anyone on the path
/// can then read the password.
pub const VERIFY: Verify<'static> = Verify::Ca(include_bytes!("../certs/ca.der"));

/// A locally administered MAC address; make it unique per device.
pub const MAC_ADDRESS: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];

/// The heartbeat: `SET HEARTBEAT_KEY "<seq>" EX HEARTBEAT_TTL` every period.
pub const HEARTBEAT_KEY: &str = "gw:f767:heartbeat";
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);
pub const HEARTBEAT_TTL_SECONDS: u64 = 30;

/// A value the gateway reads each period; while Redis is down it comes from
/// the fallback cache.
pub const SETPOINT_KEY: &str = "gw:f767:setpoint";

/// Per-command deadline.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
