//! Two ways to read the packet, one parser over both ([`Reader`]):
//! [`Linear`] reads the skb's linear head directly (`skb->data` ..
//! `skb->data_end`, bounds-checked for the verifier), which costs a few
//! instructions a field; [`Skb`] goes through `bpf_skb_load_bytes`, a
//! helper call a field, which also reaches bytes in paged fragments.
//!
//! The parser runs over [`Linear`] first. When the whole packet is in the
//! head (always for `BPF_PROG_TEST_RUN`, and for most small frames), a
//! read past `data_end` is a read past the packet, exactly where
//! `bpf_skb_load_bytes` fails too, so its outcome is final; otherwise a
//! parse that failed is run again over [`Skb`] (see `parse::parse`).

use aya_ebpf::programs::TcContext;

/// Reads `T` (plain bytes, any alignment) at `offset` from the start of
/// the frame; `None` past the end.
pub trait Reader {
    fn new(ctx: &TcContext) -> Self;
    fn load<T: Copy>(&self, offset: usize) -> Option<T>;
}

/// The largest offset [`Linear`] reads at: a bound the verifier needs for
/// pointer arithmetic on packet pointers. A packet whose head is longer
/// is parsed over [`Skb`] when the linear parse fails.
pub const MAX_LINEAR: usize = 0x3fff;

/// Direct reads of the skb's linear head.
pub struct Linear {
    data: usize,
    end: usize,
}

impl Reader for Linear {
    #[inline(always)]
    fn new(ctx: &TcContext) -> Self {
        Linear {
            data: ctx.data(),
            end: ctx.data_end(),
        }
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        if offset > MAX_LINEAR {
            return None;
        }
        let at = self.data + offset;
        // Hidden from LLVM, which would turn `at + 1 > end` into
        // `at >= end`, a test the verifier learns no packet range from.
        let size = core::hint::black_box(core::mem::size_of::<T>());
        if at + size > self.end {
            return None;
        }
        // SAFETY: `at .. at + size_of::<T>()` lies inside the linear head
        // (checked above, and by the verifier).
        Some(unsafe { core::ptr::read_unaligned(at as *const T) })
    }
}

impl Linear {
    /// Whether the whole packet is in the head and short enough for every
    /// offset to pass [`MAX_LINEAR`]: then a read that fails here fails
    /// through `bpf_skb_load_bytes` too.
    #[inline(always)]
    pub fn whole(ctx: &TcContext) -> bool {
        let head = ctx.data_end() - ctx.data();
        head == ctx.len() as usize && head <= MAX_LINEAR
    }
}

/// Reads through `bpf_skb_load_bytes`: bounds-checked against the whole
/// skb, paged fragments included. (A pointer, not a reference, so that
/// [`Reader::new`] needs no lifetime: it lives as long as the run.)
pub struct Skb(*const TcContext);

impl Reader for Skb {
    #[inline(always)]
    fn new(ctx: &TcContext) -> Self {
        Skb(ctx)
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        // SAFETY: the context outlives the program run that made `self`.
        unsafe { (*self.0).load::<T>(offset).ok() }
    }
}
