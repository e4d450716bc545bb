//! Leadership (issue 21) on every store of the list: one leader at a time, a resign hands
//! over at once, the loop form campaigns again, terms rise where the store fences, a lost
//! term stops its body, and observers see who leads.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locked::{Election, LockError, Locker, locked};
use locked_test_support::{Store, eventually, on_stores};
use tokio::time::Instant;

on_stores!(
    one_leads_at_a_time_and_a_resign_hands_over,
    the_loop_form_campaigns_again_and_terms_rise,
    a_lost_term_stops_its_body_and_the_loop_leads_again,
    observe_names_the_leader_and_sees_a_change,
    a_standby_with_a_timeout_gives_up_and_bad_identities_are_refused,
    the_attribute_leads_one_at_a_time_and_campaigns_again_after_a_loss,
    a_resign_ends_a_waiting_campaign_and_later_calls_campaign_again,
    a_leader_that_steps_down_lets_a_standby_take_its_turn,
);

/// Counts the bodies inside a term at once, and the most there ever were.
#[derive(Clone, Default)]
struct Inside {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

struct Entered(Inside);

impl Inside {
    fn enter(&self) -> Entered {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        Entered(self.clone())
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Leads until resigned, recording its name when it starts leading.
fn stand(
    election: &Election,
    inside: &Inside,
    led: &Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<Result<(), LockError>> {
    let (election, inside, led) = (election.clone(), inside.clone(), led.clone());
    tokio::spawn(async move {
        election
            .lead(|term| async move {
                let _in = inside.enter();
                led.lock().unwrap().push(term.identity().to_owned());
                std::future::pending::<()>().await
            })
            .await
    })
}

async fn one_leads_at_a_time_and_a_resign_hands_over(s: Store) {
    // A long ttl: the hand-over must come from the resign, not from expiry.
    let opts = s.locker.options().ttl(Duration::from_secs(20));
    let a = s.locker.election("lead-1").identity("a").options(opts);
    let b = s.other().election("lead-1").identity("b").options(opts);
    let (inside, led) = (Inside::default(), Arc::new(Mutex::new(Vec::new())));
    let ta = stand(&a, &inside, &led);
    let tb = stand(&b, &inside, &led);
    let one = eventually(Duration::from_secs(10), async || {
        led.lock().unwrap().len() == 1
    })
    .await;
    assert!(one, "no one led within 10 s");
    // Both campaign now; still only one leads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        led.lock().unwrap().len(),
        1,
        "a second instance led: {led:?}"
    );
    let first = led.lock().unwrap()[0].clone();
    let (leader, standby) = if first == "a" { (&a, &b) } else { (&b, &a) };
    let resigned = Instant::now();
    assert!(leader.resign().await, "the leader did not know it led");
    let two = eventually(Duration::from_secs(10), async || {
        led.lock().unwrap().len() == 2
    })
    .await;
    let took = resigned.elapsed();
    assert!(two, "the standby did not lead after the resign");
    assert!(
        took < Duration::from_secs(5),
        "the standby led {took:?} after the resign: it waited for expiry, not the release"
    );
    assert_ne!(led.lock().unwrap()[1], first);
    assert!(standby.resign().await);
    for task in [ta, tb] {
        let err = task.await.unwrap().unwrap_err();
        assert!(err.is_resigned(), "{err}");
    }
    assert_eq!(inside.most.load(Ordering::SeqCst), 1, "two leaders at once");
    assert!(!s.locker.is_locked("lead-1").await.unwrap());
}

async fn the_loop_form_campaigns_again_and_terms_rise(s: Store) {
    let election = s.locker.election("lead-2");
    let mut terms = Vec::new();
    let out = election
        .lead_forever(|term| {
            terms.push(term.fencing_token());
            let n = terms.len();
            async move {
                if n == 3 {
                    ControlFlow::Break(n)
                } else {
                    ControlFlow::Continue(())
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(out, 3, "the body returned Continue twice, then Break");
    if s.fences() {
        let numbers: Vec<u64> = terms.iter().map(|t| t.expect("a fenced term")).collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "terms did not rise: {numbers:?}"
        );
    } else {
        assert!(terms.iter().all(Option::is_none), "{terms:?}");
    }
    assert!(!s.locker.is_locked("lead-2").await.unwrap());
}

async fn a_lost_term_stops_its_body_and_the_loop_leads_again(s: Store) {
    let opts = s.locker.options().ttl(Duration::from_millis(1500));
    let election = s.locker.election("lead-3").options(opts);
    let terms = Arc::new(Mutex::new(Vec::new()));
    let heard = Arc::new(Mutex::new(None::<LockError>));
    let inside = Inside::default();
    let task = tokio::spawn({
        let (terms, heard, inside) = (terms.clone(), heard.clone(), inside.clone());
        async move {
            election
                .lead_forever(|term| {
                    let first = {
                        let mut terms = terms.lock().unwrap();
                        terms.push(term.fencing_token());
                        terms.len() == 1
                    };
                    let (heard, inside) = (heard.clone(), inside.clone());
                    async move {
                        if !first {
                            return ControlFlow::Break(());
                        }
                        // Spawned work listens for the end of the term.
                        let listener = tokio::spawn({
                            let term = term.clone();
                            async move { *heard.lock().unwrap() = Some(term.lost().await) }
                        });
                        let _in = inside.enter();
                        std::future::pending::<()>().await;
                        drop(listener);
                        ControlFlow::Continue(())
                    }
                })
                .await
        }
    });
    let led = eventually(Duration::from_secs(10), async || {
        terms.lock().unwrap().len() == 1
    })
    .await;
    assert!(led, "never led");
    // Someone takes the key away: the watchdog finds the term lost at its next renewal.
    assert!(s.other().force_release("lead-3").await.unwrap());
    let result = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the loop did not lead again after the loss")
        .unwrap();
    result.unwrap();
    assert_eq!(
        inside.now.load(Ordering::SeqCst),
        0,
        "the lost term's body still runs"
    );
    let heard = eventually(Duration::from_secs(5), async || {
        heard.lock().unwrap().is_some()
    })
    .await;
    assert!(heard, "the term's spawned work never heard of the loss");
    let terms = terms.lock().unwrap().clone();
    assert_eq!(terms.len(), 2, "{terms:?}");
    if s.fences() {
        assert!(
            terms[1] > terms[0],
            "the new term's number did not rise: {terms:?}"
        );
    }
}

async fn observe_names_the_leader_and_sees_a_change(s: Store) {
    let opts = s.locker.options().ttl(Duration::from_secs(20));
    let a = s.locker.election("lead-4").identity("obs-a").options(opts);
    let b = s.other().election("lead-4").identity("obs-b").options(opts);
    let mut observer = s
        .other()
        .election("lead-4")
        .observe()
        .every(Duration::from_millis(20));
    assert_eq!(observer.changed().await.unwrap(), None, "no one leads yet");
    let (inside, led) = (Inside::default(), Arc::new(Mutex::new(Vec::new())));
    let ta = stand(&a, &inside, &led);
    // The body's own record, not only the store's view: then `a` knows it leads.
    assert!(
        eventually(Duration::from_secs(10), async || led.lock().unwrap().len()
            == 1)
        .await
    );
    let seen = tokio::time::timeout(Duration::from_secs(10), observer.changed())
        .await
        .expect("the observer did not see the leader")
        .unwrap()
        .expect("a leader");
    assert_eq!(seen.identity.as_deref(), Some("obs-a"));
    assert_eq!(seen.term.is_some(), s.fences(), "{seen:?}");
    let info = s.locker.inspect("lead-4").await.unwrap();
    assert_eq!(info.owner(), Some("obs-a"), "{info:?}");
    let tb = stand(&b, &inside, &led);
    assert!(a.resign().await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let next = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let now = tokio::time::timeout(left, observer.changed())
            .await
            .expect("the observer did not see the change")
            .unwrap();
        if let Some(leader) = now {
            break leader;
        }
    };
    assert_eq!(next.identity.as_deref(), Some("obs-b"));
    if s.fences() {
        assert!(next.term > seen.term, "{seen:?} then {next:?}");
    }
    assert_eq!(observer.current(), Some(&next));
    // The store names `b` as soon as its try lands; its term begins when the answer is
    // back. A resign in between gives the key back without a term, and says so.
    assert!(
        eventually(Duration::from_secs(10), async || led.lock().unwrap().len()
            == 2)
        .await,
        "b's term did not begin"
    );
    assert!(b.resign().await);
    for task in [ta, tb] {
        assert!(task.await.unwrap().unwrap_err().is_resigned());
    }
}

async fn a_standby_with_a_timeout_gives_up_and_bad_identities_are_refused(s: Store) {
    let held = s
        .locker
        .acquire("lead-5", s.locker.options())
        .await
        .unwrap();
    let started = Instant::now();
    let err = s
        .other()
        .election("lead-5")
        .timeout(Duration::from_millis(300))
        .lead(|_| async {})
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    held.release().await.unwrap();
    // A zero timeout still tries once: the key is free now.
    let led = s
        .other()
        .election("lead-5")
        .timeout(Duration::ZERO)
        .lead(|term| async move { term.key().to_owned() })
        .await
        .unwrap();
    assert_eq!(led, s.full("lead-5"));
    for bad in ["", "two\nlines"] {
        let err = s
            .locker
            .election("lead-5b")
            .identity(bad)
            .lead(|_| async {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LockError::Config { setting, .. } if setting == "Election::identity"),
            "{err}"
        );
    }
    assert!(!s.locker.is_locked("lead-5b").await.unwrap());
}

/// A singleton job as users write it: the first term runs until its term limit
/// (`max_hold`) ends it as lost, later ones finish; each call returns the number of its
/// finishing run.
#[locked(key = "lead-attr", leader, ttl = "3s", max_hold = "1s", locker = locker)]
async fn singleton_job(
    locker: &Locker,
    inside: &Inside,
    runs: &AtomicUsize,
) -> Result<usize, LockError> {
    let _in = inside.enter();
    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
    if run == 1 {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(run)
}

async fn the_attribute_leads_one_at_a_time_and_campaigns_again_after_a_loss(s: Store) {
    let (inside, runs) = (Inside::default(), Arc::new(AtomicUsize::new(0)));
    let calls: Vec<_> = [s.locker.clone(), s.other()]
        .into_iter()
        .map(|locker| {
            let (inside, runs) = (inside.clone(), runs.clone());
            tokio::spawn(async move { singleton_job(&locker, &inside, &runs).await })
        })
        .collect();
    let first = eventually(Duration::from_secs(10), async || {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(first, "no call led");
    // The first term reaches its limit and is lost (the key released); its call campaigns
    // again, behind the other one, which leads meanwhile.
    let mut finished = Vec::new();
    for call in calls {
        let out = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("a leader call did not finish after the loss")
            .unwrap();
        finished.push(out.unwrap());
    }
    finished.sort_unstable();
    assert_eq!(
        finished,
        [2, 3],
        "the lost term's call did not run its body anew"
    );
    assert_eq!(
        inside.most.load(Ordering::SeqCst),
        1,
        "two bodies led at once"
    );
    assert!(!s.locker.is_locked("lead-attr").await.unwrap());
}

async fn a_resign_ends_a_waiting_campaign_and_later_calls_campaign_again(s: Store) {
    let held = s
        .locker
        .acquire("lead-6", s.locker.options())
        .await
        .unwrap();
    let standby = s.other().election("lead-6");
    let waiting = tokio::spawn({
        let standby = standby.clone();
        async move { standby.lead(|_| async {}).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!standby.resign().await, "the standby did not lead");
    let err = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the campaign went on after the resign")
        .unwrap()
        .unwrap_err();
    assert!(err.is_resigned(), "{err}");
    held.release().await.unwrap();
    // The resign ended the calls under way, not the election.
    let again = standby
        .timeout(Duration::from_secs(10))
        .lead(|term| async move { term.is_over() })
        .await
        .unwrap();
    assert!(!again, "a term is not over while its body runs");
}

async fn a_leader_that_steps_down_lets_a_standby_take_its_turn(s: Store) {
    let opts = s.locker.options().ttl(Duration::from_secs(2));
    let stepping = s
        .locker
        .election("lead-7")
        .identity("stepper")
        .options(opts);
    let terms = Arc::new(AtomicUsize::new(0));
    let a = tokio::spawn({
        let terms = terms.clone();
        async move {
            stepping
                .lead_forever(|_| {
                    terms.fetch_add(1, Ordering::SeqCst);
                    async { ControlFlow::<()>::Continue(()) }
                })
                .await
        }
    });
    assert!(
        eventually(Duration::from_secs(10), async || terms
            .load(Ordering::SeqCst)
            > 0)
        .await
    );
    let b = s
        .other()
        .election("lead-7")
        .identity("standby")
        .options(opts);
    let started = Instant::now();
    let turn = tokio::time::timeout(
        Duration::from_secs(15),
        b.lead(|t| async move { t.identity().to_owned() }),
    )
    .await
    .expect("the standby never got a turn beside a leader that keeps stepping down")
    .unwrap();
    assert_eq!(turn, "standby");
    println!("standby's turn came after {:?}", started.elapsed());
    a.abort();
}
