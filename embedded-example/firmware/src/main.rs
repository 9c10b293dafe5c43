//! Gateway firmware for the Nucleo-F767ZI: Ethernet (RMII, on-board LAN8742A)
//! with DHCP, one Redis connection run by resilis-core through the
//! `resilis-embassy` driver, plain or TLS 1.3 as `config::REDIS_URL` says.
//! Every `HEARTBEAT_PERIOD` it SETs a heartbeat key and reads a setpoint;
//! while Redis is unavailable, the core answers the read from the fallback
//! cache (when it holds the key) and fails the write with the reason. Logs
//! over defmt-RTT.
//!
//! The same driver and application code run on the host in
//! `resilis-embassy-host`, which `tap-test.sh` checks against a real
//! redis-server.
#![no_std]
#![no_main]

mod config;

use core::fmt::Write as _;

use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, eth, peripherals, rng};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::Timer;
use embedded_tls::NoClock;
use resilis_core::Config;
use resilis_embassy::Shared;
use resilis_embassy::net::{TcpConnector, TlsConnector, TlsOptions};
use resilis_gateway::Gateway;
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<peripherals::RNG>;
});

type Mutex = CriticalSectionRawMutex;
type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;
/// No wall clock on the board: certificate dates are not checked.
type Link = TlsConnector<'static, Rng<'static, RNG>, NoClock>;
type RedisRunner = resilis_embassy::Runner<'static, Mutex, Link, 8, 256, 512>;

/// The memory of the Redis connection: TCP socket buffers, TLS record
/// buffers (16640 bytes holds the largest TLS record), the reply buffer.
struct Buffers {
    tcp_rx: [u8; 2048],
    tcp_tx: [u8; 2048],
    tls_read: [u8; 16640],
    tls_write: [u8; 4096],
    rx: [u8; 1024],
}

static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
static BUFFERS: StaticCell<Buffers> = StaticCell::new();
static SHARED: Shared<Mutex, 256, 512> = Shared::new();

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn redis_task(mut runner: RedisRunner) -> ! {
    runner.run().await
}

fn chip_config() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    // 8 MHz from the ST-LINK's MCO; 216 MHz core; 48 MHz for the RNG.
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL216,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV9),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config.rcc.mux.clk48sel = mux::Clk48sel::PLL1_Q;
    config
}

fn redis_config() -> Config {
    // A malformed constant is a build-time mistake: fail loudly at boot.
    unwrap!(Config::from_url(config::REDIS_URL).ok())
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_stm32::init(chip_config());
    info!("resilis gateway starting");

    let mut rng = Rng::new(p.RNG, Irqs);
    let seed = rng.next_u64();

    let device = Ethernet::new(
        PACKETS.init(PacketQueue::new()),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        config::MAC_ADDRESS,
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );
    let net_config = embassy_net::Config::dhcpv4(Default::default());
    let (stack, net_runner) = embassy_net::new(
        device,
        net_config,
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(unwrap!(net_task(net_runner)));

    info!("waiting for DHCP");
    stack.wait_config_up().await;
    if let Some(v4) = stack.config_v4() {
        info!("address {}", v4.address);
    }

    let buffers = BUFFERS.init(Buffers {
        tcp_rx: [0; 2048],
        tcp_tx: [0; 2048],
        tls_read: [0; 16640],
        tls_write: [0; 4096],
        rx: [0; 1024],
    });
    let tcp = TcpConnector::new(stack, &mut buffers.tcp_rx, &mut buffers.tcp_tx);
    let options = TlsOptions {
        verify: config::VERIFY,
        server_name: config::TLS_SERVER_NAME,
    };
    let connector = TlsConnector::new(
        tcp,
        &mut buffers.tls_read,
        &mut buffers.tls_write,
        options,
        rng,
    );
    let (runner, client) =
        resilis_embassy::new(redis_config(), connector, &SHARED, &mut buffers.rx);
    spawner.spawn(unwrap!(redis_task(runner)));

    let mut app: Gateway<'static, Mutex, 256, 512, 8, 32, 64> =
        Gateway::new(client, config::COMMAND_TIMEOUT);
    let mut seq: u32 = 0;
    loop {
        seq = seq.wrapping_add(1);
        let mut beat: heapless::String<24> = heapless::String::new();
        // "beat 4294967295" fits in 24 bytes.
        let _ = write!(beat, "beat {seq}");
        match app
            .set(
                config::HEARTBEAT_KEY,
                beat.as_bytes(),
                Some(config::HEARTBEAT_TTL_SECONDS),
            )
            .await
        {
            Ok(()) => info!("heartbeat {}: acknowledged", seq),
            // During an outage: not applied, with the reason.
            Err(error) => warn!("heartbeat {}: {}", seq, error),
        }
        let status = app.status();
        match app.get(config::SETPOINT_KEY).await {
            Ok(read) => info!(
                "setpoint {=[u8]:a} from {} (redis {})",
                read.value().unwrap_or(b"<none>"),
                read.source(),
                status.phase,
            ),
            Err(error) => warn!("setpoint: {} (redis {})", error, status.phase),
        }
        Timer::after(config::HEARTBEAT_PERIOD).await;
    }
}
