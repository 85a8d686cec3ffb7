//! Attachments: how an extension hangs its own state, and its own step of the stop, on a
//! stopper without the token knowing it exists.
//!
//! An extension defines a type implementing [`Attachment`]. The first time it needs a stopper
//! it attaches a value of that type to the stopper's slow part ([`Slow::attach`]); from then
//! on it finds it there, under the stopper's lock, by type ([`Slow::attachment`]). When the
//! stopper stops, after its children and before its callbacks, the stop calls each attached
//! type's [`Attachment::on_stop`] once, in [`Attachment::ORDER`], with no lock held. A value
//! attached after the stop began is not called: whoever attaches checks `is_set` under the
//! same lock and does its stop step itself (as registering a callback runs it inline then).
//!
//! The values live as long as the stopper (they drop with its slow part, after the stopper's
//! own `Drop`).

use std::any::{Any, TypeId};

use crate::base::rc::Arc;
use crate::base::status::Status;
use crate::token::inner::{Inner, Slow};

/// A caught panic, resumed once everything else the stop owes has run.
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// An extension's state on a stopper, and its step of the stop.
pub(crate) trait Attachment: Any + Send {
    /// Place among the attached types' stop steps, lowest first (SPEC's order: the descriptor
    /// is signalled before the workers' hooks are called).
    const ORDER: u8;

    /// This stopper's step of the stop, run once on the stopping thread with no lock held.
    /// Returns the first panic of user code it ran, after running all of it.
    fn on_stop(_stopper: &Arc<Inner>, _reason: i32) -> Option<Panic> {
        None
    }
}

/// The most attachment types one stop calls without allocating (the extensions that have a
/// stop step; more would be called too, see `Slow::stop_steps`).
pub(crate) const MAX_STEPS: usize = 8;

/// An attached type's stop step ([`Attachment::on_stop`]).
pub(crate) type StopStep = fn(&Arc<Inner>, i32) -> Option<Panic>;

/// One attached value.
struct Entry {
    id: TypeId,
    order: u8,
    on_stop: StopStep,
    value: Box<dyn Any + Send>,
}

/// The attached values of one stopper, sorted by `ORDER`.
#[derive(Default)]
pub(crate) struct Attachments(Vec<Entry>);

impl Slow {
    /// The value of type `T` attached to this stopper, if any.
    pub(crate) fn attachment<T: Attachment>(&mut self) -> Option<&mut T> {
        let at = self
            .attached
            .0
            .iter()
            .position(|e| e.id == TypeId::of::<T>())?;
        self.attached.0[at].value.downcast_mut::<T>()
    }

    /// The value of type `T`, attaching `make()` first if there is none; `NoMem` (nothing
    /// attached) when memory cannot be had.
    pub(crate) fn attach<T: Attachment>(
        &mut self,
        make: impl FnOnce() -> T,
    ) -> Result<&mut T, Status> {
        let list = &mut self.attached.0;
        let at = match list.iter().position(|e| e.id == TypeId::of::<T>()) {
            Some(at) => at,
            None => {
                list.try_reserve(1).map_err(|_| Status::NoMem)?;
                let value: Box<dyn Any + Send> =
                    crate::base::rc::try_box(make()).map_err(|_| Status::NoMem)?;
                let at = list.iter().take_while(|e| e.order <= T::ORDER).count();
                list.insert(
                    at,
                    Entry {
                        id: TypeId::of::<T>(),
                        order: T::ORDER,
                        on_stop: T::on_stop,
                        value,
                    },
                );
                at
            }
        };
        Ok(list[at]
            .value
            .downcast_mut::<T>()
            .expect("an entry holds the type it is filed under"))
    }

    /// The stop steps of the types attached now, in order (copied under the lock, called
    /// without it). Steps past `MAX_STEPS` are returned as `false` in the second value; the
    /// caller then asks again from that index.
    pub(crate) fn stop_steps(&self, from: usize) -> ([Option<StopStep>; MAX_STEPS], bool) {
        let mut steps = [None; MAX_STEPS];
        let rest = self.attached.0.get(from..).unwrap_or(&[]);
        for (slot, e) in steps.iter_mut().zip(rest) {
            *slot = Some(e.on_stop);
        }
        (steps, rest.len() <= MAX_STEPS)
    }
}
