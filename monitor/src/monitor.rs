//! The run loop: sample the registry every tick, draw the dashboard (or
//! print a line a second), and stop when the work is done or the user quits.
//!
//! The terminal is put back in its normal state on every way out of the
//! TUI: a normal return, an I/O error (the guard's `Drop`) and a panic on
//! any thread (a panic hook that restores first, then chains to the hook
//! that was there before). If another thread panics while the TUI is up, the
//! hook restores the terminal so the message stays readable, and the
//! dashboard carries on in plain mode.

use std::io::{self, IsTerminal, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::format;
use crate::registry::Registry;
use crate::state::DashState;
use crate::summary::Summary;
use crate::ui;

/// Shortest accepted tick, so a zero tick cannot spin a core.
const MIN_TICK: Duration = Duration::from_millis(10);

/// Plain mode prints a line this often.
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(1);

/// Plain mode checks for the end of the run at least this often.
const PLAIN_POLL: Duration = Duration::from_millis(50);

/// How the dashboard is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Full-screen dashboard on the alternate screen.
    Tui,
    /// One text line per second on stdout.
    Plain,
}

impl Mode {
    /// `Plain` when `no_tui` is set, stdout is not a terminal, or `TERM` is
    /// `dumb`; `Tui` otherwise.
    pub fn detect(no_tui: bool) -> Mode {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if no_tui || dumb || !io::stdout().is_terminal() {
            Mode::Plain
        } else {
            Mode::Tui
        }
    }
}

/// How a [`Monitor`] looks and how often it samples.
#[derive(Clone, Debug)]
pub struct MonitorOptions {
    /// Shown in the header and the summary.
    pub title: String,
    /// TUI or plain lines.
    pub mode: Mode,
    /// Time between samples (and redraws); values under 10 ms count as 10 ms.
    pub tick: Duration,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        Self {
            title: "tern".to_owned(),
            mode: Mode::detect(false),
            tick: Duration::from_millis(250),
        }
    }
}

/// The phase shown in the header, and the lines of the "results so far"
/// panel, set by the bench from any thread.
#[derive(Clone, Debug, Default)]
pub struct Status {
    phase: Arc<Mutex<String>>,
    results: Arc<Mutex<Vec<String>>>,
}

impl Status {
    /// A status with an empty phase.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the phase text, e.g. "connection storm 4,213/10,000".
    pub fn set_phase(&self, phase: impl Into<String>) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase.into();
    }

    /// The current phase text.
    pub fn phase(&self) -> String {
        self.phase
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the lines of the "results so far" panel, drawn under the
    /// tiles as given (already aligned, one line each); no lines, no panel.
    /// Plain mode does not print them.
    pub fn set_results(&self, lines: Vec<String>) {
        *self.results.lock().unwrap_or_else(PoisonError::into_inner) = lines;
    }

    /// The current lines of the "results so far" panel.
    pub fn results(&self) -> Vec<String> {
        self.results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Why a loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// `finished()` returned true.
    Finished,
    /// The user quit (key, SIGINT) or someone else set `stop`.
    Quit,
    /// A panic elsewhere restored the terminal under the TUI.
    TerminalLost,
}

/// The SIGINT flags, registered once per process.
#[derive(Debug)]
struct Signals {
    /// Set by every SIGINT.
    pressed: Arc<AtomicBool>,
    /// While set, SIGINT does what it does by default (ends the process).
    passthrough: Arc<AtomicBool>,
}

/// Registers the SIGINT handlers on first use.
fn signals() -> io::Result<&'static Signals> {
    static SIGNALS: OnceLock<Result<Signals, io::ErrorKind>> = OnceLock::new();
    let registered = SIGNALS.get_or_init(|| {
        let signals = Signals {
            pressed: Arc::new(AtomicBool::new(false)),
            passthrough: Arc::new(AtomicBool::new(true)),
        };
        let sigint = signal_hook::consts::SIGINT;
        // Order matters: the default action runs first when passthrough is
        // set, so the flag is only ever seen while a dashboard runs.
        signal_hook::flag::register_conditional_default(sigint, signals.passthrough.clone())
            .and_then(|_| signal_hook::flag::register(sigint, signals.pressed.clone()))
            .map_err(|e| e.kind())?;
        Ok(signals)
    });
    registered
        .as_ref()
        .map_err(|&kind| io::Error::new(kind, "cannot register a SIGINT handler"))
}

/// Gives SIGINT back its default action when a run ends, however it ends.
struct Passthrough(&'static Signals);

impl Drop for Passthrough {
    fn drop(&mut self) {
        self.0.passthrough.store(true, Ordering::SeqCst);
    }
}

/// True while the TUI owns the terminal and nothing has restored it yet.
static TERMINAL_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves raw mode and the alternate screen; errors are ignored because
/// this runs on the way out, when there is nothing better to do.
fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if TERMINAL_ACTIVE.swap(false, Ordering::SeqCst) {
                restore_terminal();
            }
            previous(info);
        }));
    });
}

/// Restores the terminal when dropped, unless a panic hook already did.
struct RawModeGuard;

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        if TERMINAL_ACTIVE.swap(false, Ordering::SeqCst) {
            restore_terminal();
        }
    }
}

/// The terminal in raw mode on the alternate screen.
struct Tui {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    // Dropped after the terminal, which shows the cursor again.
    _guard: RawModeGuard,
}

impl Tui {
    fn enter() -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        TERMINAL_ACTIVE.store(true, Ordering::SeqCst);
        let guard = RawModeGuard;

        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        terminal.clear()?;
        Ok(Self {
            terminal,
            _guard: guard,
        })
    }

    fn draw(&mut self, st: &DashState) -> io::Result<()> {
        self.terminal.draw(|frame| ui::render(frame, st))?;
        Ok(())
    }
}

/// q, Q, Esc and Ctrl-C quit.
fn is_quit(event: &Event) -> bool {
    let Event::Key(KeyEvent {
        code,
        modifiers,
        kind,
        ..
    }) = event
    else {
        return false;
    };
    if *kind != KeyEventKind::Press {
        return false;
    }
    match code {
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
        KeyCode::Char('c' | 'C') => modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// The next deadline after `deadline`, skipping any that already passed.
fn advance(deadline: Instant, period: Duration, now: Instant) -> Instant {
    let next = deadline + period;
    if next <= now {
        now + period
    } else {
        next
    }
}

/// The line plain mode prints every second.
pub(crate) fn plain_line(st: &DashState) -> String {
    let live = &st.live;
    let us =
        |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{}µs", format::num(v)));
    format!(
        "{:>9}  [{}]  open {}  conn/ms {}  conn/MiB {}  echoes/ms {}  echoed MB/s {}  p50 {}  p99 {}",
        format::secs(st.elapsed),
        st.phase,
        format::num_int(live.open),
        format::num(live.conn_per_ms),
        format::opt(live.conn_per_mib),
        format::num(live.echoes_per_ms),
        format::num(live.mb_per_s),
        us(live.p50_us),
        us(live.p99_us),
    )
}

/// The live dashboard over a [`Registry`].
#[derive(Debug)]
pub struct Monitor {
    registry: &'static Registry,
    status: Status,
    options: MonitorOptions,
    state: DashState,
}

impl Monitor {
    /// A dashboard reading `registry`, showing the phase from `status`.
    pub fn new(registry: &'static Registry, status: Status, options: MonitorOptions) -> Monitor {
        let state = DashState::new(options.title.clone());
        Monitor {
            registry,
            status,
            options,
            state,
        }
    }

    /// Runs until `finished()` returns true or the user quits (q, Esc or
    /// Ctrl-C in the TUI; SIGINT in either mode), then returns the summary.
    /// A quit sets `stop`; `stop` set by anyone else also ends the run.
    ///
    /// While this runs, the first SIGINT is caught; after a quit, or
    /// outside a run, SIGINT ends the process as usual. Only one monitor may
    /// run in TUI mode at a time.
    ///
    /// # Errors
    ///
    /// A terminal or stdout error (the terminal is restored first), or a
    /// SIGINT handler that cannot be registered.
    pub fn run(&mut self, stop: &AtomicBool, finished: &dyn Fn() -> bool) -> io::Result<Summary> {
        let signals = signals()?;
        signals.pressed.store(false, Ordering::SeqCst);
        signals.passthrough.store(false, Ordering::SeqCst);
        let _passthrough = Passthrough(signals);

        let start = Instant::now();
        self.sample(start);
        let mut outcome = match self.options.mode {
            Mode::Tui => self.run_tui(start, signals, stop, finished)?,
            Mode::Plain => Outcome::TerminalLost,
        };
        if outcome == Outcome::TerminalLost {
            outcome = self.run_plain(start, signals, stop, finished)?;
        }

        if outcome == Outcome::Quit {
            stop.store(true, Ordering::SeqCst);
        }
        self.sample(start);
        Ok(self.state.summary(outcome == Outcome::Quit))
    }

    fn tick(&self) -> Duration {
        self.options.tick.max(MIN_TICK)
    }

    fn sample(&mut self, start: Instant) {
        let t = start.elapsed().as_secs_f64();
        let snap = self.registry.snapshot();
        self.state.update(t, self.status.phase(), &snap);
        self.state.results = self.status.results();
    }

    /// Whether the run should end now, and why.
    fn end(signals: &Signals, stop: &AtomicBool, finished: &dyn Fn() -> bool) -> Option<Outcome> {
        if finished() {
            return Some(Outcome::Finished);
        }
        if signals.pressed.swap(false, Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
            // A second SIGINT while the bench winds down ends the process.
            signals.passthrough.store(true, Ordering::SeqCst);
            return Some(Outcome::Quit);
        }
        None
    }

    fn run_tui(
        &mut self,
        start: Instant,
        signals: &Signals,
        stop: &AtomicBool,
        finished: &dyn Fn() -> bool,
    ) -> io::Result<Outcome> {
        let mut tui = Tui::enter()?;
        let tick = self.tick();
        tui.draw(&self.state)?;
        let mut next_tick = start + tick;
        loop {
            if !TERMINAL_ACTIVE.load(Ordering::SeqCst) {
                return Ok(Outcome::TerminalLost);
            }
            if let Some(outcome) = Self::end(signals, stop, finished) {
                return Ok(outcome);
            }

            let now = Instant::now();
            if now >= next_tick {
                self.sample(start);
                tui.draw(&self.state)?;
                next_tick = advance(next_tick, tick, now);
            }

            let timeout = next_tick.saturating_duration_since(Instant::now());
            if !event::poll(timeout)? {
                continue;
            }
            let event = event::read()?;
            if is_quit(&event) {
                signals.passthrough.store(true, Ordering::SeqCst);
                return Ok(Outcome::Quit);
            }
            if let Event::Resize(..) = event {
                tui.draw(&self.state)?;
            }
        }
    }

    fn run_plain(
        &mut self,
        start: Instant,
        signals: &Signals,
        stop: &AtomicBool,
        finished: &dyn Fn() -> bool,
    ) -> io::Result<Outcome> {
        let tick = self.tick();
        let mut out = io::stdout();
        let now = Instant::now();
        let mut next_tick = advance(start, tick, now);
        let mut next_line = advance(start, PLAIN_LINE_EVERY, now);
        loop {
            if let Some(outcome) = Self::end(signals, stop, finished) {
                return Ok(outcome);
            }

            let now = Instant::now();
            let line_due = now >= next_line;
            if now >= next_tick || line_due {
                self.sample(start);
                next_tick = advance(next_tick, tick, now);
            }
            if line_due {
                writeln!(out, "{}", plain_line(&self.state))?;
                out.flush()?;
                next_line = advance(next_line, PLAIN_LINE_EVERY, now);
            }

            let wake = next_tick.min(next_line);
            let nap = wake
                .saturating_duration_since(Instant::now())
                .min(PLAIN_POLL);
            std::thread::sleep(nap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{snap, with_latency};

    /// SIGINT handling is process-wide: runs in tests take turns.
    static RUN_LOCK: Mutex<()> = Mutex::new(());

    fn run_lock() -> std::sync::MutexGuard<'static, ()> {
        RUN_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn quit_keys() {
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('Q'), KeyModifiers::SHIFT)));
        assert!(is_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
        assert!(!is_quit(&Event::Resize(80, 24)));
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert!(!is_quit(&Event::Key(release)));
    }

    #[test]
    fn deadlines_skip_missed_ticks() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(250);
        assert_eq!(advance(t0, tick, t0), t0 + tick);
        let late = t0 + Duration::from_secs(2);
        assert_eq!(advance(t0, tick, late), late + tick);
    }

    #[test]
    fn plain_line_format() {
        let mut st = DashState::new("tern");
        let latency: Vec<f64> = (0..100).map(f64::from).collect();
        st.update(0.0, "idle", &with_latency(snap(0, 0.0, 0, 0, None), &[]));
        let rss = Some(10.0 * 1048576.0 + 4213.0 * 4096.0);
        let s = with_latency(snap(4213, 4213.0, 2000, 64_000, rss), &latency);
        st.update(1.0, "connection storm 4,213/10,000", &s);
        assert_eq!(
            plain_line(&st),
            "    1.0 s  [connection storm 4,213/10,000]  open 4,213  conn/ms 4.21  \
             conn/MiB 256  echoes/ms 2.00  echoed MB/s 0.064  p50 49.0µs  p99 98.0µs"
        );
    }

    #[test]
    fn plain_line_without_data() {
        let mut st = DashState::new("tern");
        st.update(0.0, "", &crate::registry::Snapshot::default());
        assert_eq!(
            plain_line(&st),
            "    0.0 s  []  open 0  conn/ms 0.00  conn/MiB n/a  echoes/ms 0.00  \
             echoed MB/s 0.00  p50 n/a  p99 n/a"
        );
    }

    #[test]
    fn status_is_shared_between_clones() {
        let status = Status::new();
        let clone = status.clone();
        clone.set_phase("echo 3.2 s/5 s");
        assert_eq!(status.phase(), "echo 3.2 s/5 s");
        assert!(status.results().is_empty());
        clone.set_results(vec!["tern  12.0".into()]);
        assert_eq!(status.results(), ["tern  12.0"]);
    }

    #[test]
    fn plain_run_ends_when_finished_and_reports() {
        let _turn = run_lock();
        let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
        let status = Status::new();
        status.set_phase("done");
        let options = MonitorOptions {
            title: "test".into(),
            mode: Mode::Plain,
            tick: Duration::ZERO,
        };
        let mut monitor = Monitor::new(registry, status, options);
        let opened = metrics::with_local_recorder(registry, || {
            metrics::counter!(crate::names::CONNECTIONS_OPENED)
        });
        opened.increment(42);
        let stop = AtomicBool::new(false);
        let summary = monitor.run(&stop, &|| true).unwrap();
        assert!(!stop.load(Ordering::SeqCst));
        assert!(!summary.interrupted);
        assert_eq!(summary.connections_opened, 42);
        assert_eq!(summary.title, "test");
    }

    #[test]
    fn plain_run_ends_on_stop() {
        let _turn = run_lock();
        let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
        let options = MonitorOptions {
            title: "test".into(),
            mode: Mode::Plain,
            tick: Duration::from_millis(10),
        };
        let mut monitor = Monitor::new(registry, Status::new(), options);
        let stop = AtomicBool::new(true);
        let summary = monitor.run(&stop, &|| false).unwrap();
        assert!(summary.interrupted);
    }

    #[test]
    fn plain_run_ends_on_sigint() {
        let _turn = run_lock();
        let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
        let options = MonitorOptions {
            title: "test".into(),
            mode: Mode::Plain,
            tick: Duration::from_millis(10),
        };
        let mut monitor = Monitor::new(registry, Status::new(), options);
        let stop = AtomicBool::new(false);
        let raised = AtomicBool::new(false);
        // The signal is raised from inside the loop, once the handler is
        // armed; the loop must then end by itself and set `stop`.
        let finished = || {
            if !raised.swap(true, Ordering::SeqCst) {
                signal_hook::low_level::raise(signal_hook::consts::SIGINT).unwrap();
            }
            false
        };
        let summary = monitor.run(&stop, &finished).unwrap();
        assert!(summary.interrupted);
        assert!(stop.load(Ordering::SeqCst));
    }
}
