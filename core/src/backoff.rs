//! The reconnect schedule: exponential from `initial` by `factor` up to
//! `max_delay`, for `max_attempts` attempts, then a *down* phase that keeps
//! probing every `probe_interval` (or gives up, if configured), with optional
//! seeded jitter.

use crate::time::Duration;

/// What happens once the exponential schedule is used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WhenExhausted {
    /// Enter the *down* phase and probe every `probe_interval` forever: a
    /// connection that dies for good after an outage is the complaint most
    /// often made against other clients.
    KeepProbing,
    /// Stop; only [`crate::Connection::handle_retry`] starts again.
    GiveUp,
}

#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BackoffConfig {
    /// Delay before the first reconnect attempt (the seed's 100 ms).
    pub initial: Duration,
    /// Growth per attempt (the seed's 2).
    pub factor: u32,
    /// Cap on any delay (the seed's 3 s).
    pub max_delay: Duration,
    /// Attempts on the exponential schedule (the seed's 10).
    pub max_attempts: u32,
    pub when_exhausted: WhenExhausted,
    /// Delay between probes in the down phase (default: `max_delay`).
    pub probe_interval: Duration,
    /// Jitter in percent (0–100): each delay is drawn from
    /// `[delay × (1 − jitter/100), delay]`, so delays never exceed the cap.
    pub jitter_percent: u8,
    /// Seed of the jitter generator: the same seed gives the same delays.
    pub jitter_seed: u64,
    /// A connection that stays ready this long resets the attempt count.
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(100),
            factor: 2,
            max_delay: Duration::from_secs(3),
            max_attempts: 10,
            when_exhausted: WhenExhausted::KeepProbing,
            probe_interval: Duration::from_secs(3),
            jitter_percent: 0,
            jitter_seed: 0x5EED_2E51_1150_0001,
            reset_after: Duration::from_secs(5),
        }
    }
}

/// The next step of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// Attempt number `attempt` (1-based) of `max_attempts`, after `delay`.
    Retry { attempt: u32, delay: Duration },
    /// The schedule is used up; probe after `delay`.
    Probe { delay: Duration },
    /// The schedule is used up and the config says give up.
    GiveUp,
}

/// Where a connection is on its schedule.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    /// Attempts made on the current schedule.
    attempts: u32,
    rng: SplitMix64,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            attempts: 0,
            rng: SplitMix64(config.jitter_seed),
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn max_attempts(&self) -> u32 {
        self.config.max_attempts
    }

    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// The delay before the next attempt, counting it.
    pub fn next_step(&mut self) -> Step {
        if self.attempts >= self.config.max_attempts {
            return match self.config.when_exhausted {
                WhenExhausted::KeepProbing => Step::Probe {
                    delay: self.jittered(self.config.probe_interval),
                },
                WhenExhausted::GiveUp => Step::GiveUp,
            };
        }
        let exponent = self.attempts;
        self.attempts += 1;
        let base = nominal_delay(&self.config, exponent);
        Step::Retry {
            attempt: self.attempts,
            delay: self.jittered(base),
        }
    }

    fn jittered(&mut self, delay: Duration) -> Duration {
        let jitter = u64::from(self.config.jitter_percent.min(100));
        if jitter == 0 {
            return delay;
        }
        let micros = crate::time::micros_of(delay);
        let spread = micros / 100 * jitter;
        let cut = if spread == 0 {
            0
        } else {
            self.rng.next() % (spread + 1)
        };
        Duration::from_micros(micros - cut)
    }
}

/// `initial × factor^exponent`, capped, computed without overflow.
pub fn nominal_delay(config: &BackoffConfig, exponent: u32) -> Duration {
    let mut delay = config.initial;
    for _ in 0..exponent {
        if delay >= config.max_delay {
            break;
        }
        delay = delay.saturating_mul(config.factor.max(1));
    }
    delay.min(config.max_delay)
}

/// Jitter source. A 64-bit splitmix generator written here because the core
/// needs a seeded, deterministic, allocation-free generator of a few lines and
/// the `rand` family would add a dependency tree for one `next()`.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_seeds_schedule_then_probing() {
        let mut b = Backoff::new(BackoffConfig::default());
        let expected = [100, 200, 400, 800, 1600, 3000, 3000, 3000, 3000, 3000];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(
                b.next_step(),
                Step::Retry {
                    attempt: i as u32 + 1,
                    delay: ms(*want)
                }
            );
        }
        assert_eq!(b.next_step(), Step::Probe { delay: ms(3000) });
        assert_eq!(b.next_step(), Step::Probe { delay: ms(3000) });
        b.reset();
        assert_eq!(
            b.next_step(),
            Step::Retry {
                attempt: 1,
                delay: ms(100)
            }
        );
    }

    #[test]
    fn give_up_when_configured() {
        let mut b = Backoff::new(BackoffConfig {
            max_attempts: 1,
            when_exhausted: WhenExhausted::GiveUp,
            ..Default::default()
        });
        assert_eq!(
            b.next_step(),
            Step::Retry {
                attempt: 1,
                delay: ms(100)
            }
        );
        assert_eq!(b.next_step(), Step::GiveUp);
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_seeded() {
        let config = BackoffConfig {
            jitter_percent: 50,
            max_attempts: 1000,
            ..Default::default()
        };
        let (mut a, mut b) = (Backoff::new(config), Backoff::new(config));
        let mut differs = false;
        for i in 0..1000u32 {
            let (Step::Retry { delay: da, .. }, Step::Retry { delay: db, .. }) =
                (a.next_step(), b.next_step())
            else {
                panic!("schedule ended early");
            };
            assert_eq!(da, db, "same seed, same delays");
            let nominal = nominal_delay(&config, i);
            assert!(da <= nominal && da >= nominal / 2, "{da:?} vs {nominal:?}");
            differs |= da != nominal;
        }
        assert!(differs, "jitter never moved a delay");
    }

    #[test]
    fn the_generator_is_splitmix64() {
        // Known answers of the reference splitmix64.c for seed 0: the jitter
        // schedule of a given seed is the same on every machine and build.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn jitter_uses_the_whole_spread() {
        // 50 % jitter on a 3 s cap: delays fall anywhere in [1.5 s, 3 s],
        // not in a sliver of it.
        let config = BackoffConfig {
            jitter_percent: 50,
            max_attempts: 400,
            ..Default::default()
        };
        let mut b = Backoff::new(config);
        let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
        for i in 0..400 {
            let Step::Retry { delay, .. } = b.next_step() else {
                panic!("schedule ended early");
            };
            // From the sixth attempt on, the nominal delay is the cap.
            if i >= 5 {
                low = low.min(delay);
                high = high.max(delay);
            }
        }
        assert!(low < ms(1_650), "lowest capped delay {low:?}");
        assert!(high > ms(2_850), "highest capped delay {high:?}");
        assert!(high <= ms(3_000) && low >= ms(1_500));
    }

    #[test]
    fn a_spread_of_one_microsecond_takes_both_values() {
        let config = BackoffConfig {
            initial: Duration::from_micros(150),
            max_delay: Duration::from_micros(150),
            jitter_percent: 1,
            max_attempts: 200,
            ..Default::default()
        };
        let mut b = Backoff::new(config);
        let mut seen = [false; 2];
        for _ in 0..200 {
            let Step::Retry { delay, .. } = b.next_step() else {
                panic!("schedule ended early");
            };
            let micros = crate::time::micros_of(delay);
            assert!((149..=150).contains(&micros), "{micros}");
            seen[(micros - 149) as usize] = true;
        }
        assert_eq!(seen, [true, true]);
    }

    #[test]
    fn huge_factors_do_not_overflow() {
        let config = BackoffConfig {
            factor: u32::MAX,
            max_delay: Duration::MAX,
            ..Default::default()
        };
        assert_eq!(nominal_delay(&config, 50), Duration::MAX);
    }
}
