//! The sg TC classifier. One program per hook (`sg_tc_ingress`,
//! `sg_tc_egress`), both running [`decide`], which sets up the per-CPU work
//! area ([`work`]) and runs the stages in this order. Each stage is a
//! separate BPF function that does nothing once an earlier one has decided:
//!
//! 1. parse the frame ([`parse`]; Ethernet or, on an L3 device, IP at
//!    offset 0); what a hypervisor-mode instance sends is checked on the
//!    link first (source MAC, ARP, neighbour discovery: [`antispoof`]);
//!    then non-IP passes (unless switched off, [`builtins`]), malformed IP
//!    drops;
//! 2. later fragments follow their first fragment ([`fragments`]);
//! 3. anti-spoofing of hypervisor-mode instances ([`antispoof`]), then the
//!    neighbour discovery and DHCP built-ins ([`builtins`]);
//! 4. a live session (answered: `SG_CONNTRACK`; not yet: `SG_UNANSWERED`)
//!    passes without rule evaluation (re-checked once against new explicit
//!    drop rules after a change; one they ended drops its packets both
//!    ways) ([`conntrack`]);
//! 5. ICMP errors quoting a session pass as related ([`related`]);
//! 6. the SMTP, PMTUD and metadata built-ins ([`builtins`]);
//! 7. the interface's compiled ruleset, or its default ([`policy`]);
//!    an accepted packet opens (or refreshes) its session;
//! 8. a first fragment's decision is remembered for the later ones.
//!
//! The decision is counted ([`metrics`]) and left in `skb->cb`. Every map
//! is declared in [`maps`].
#![no_std]
#![no_main]

mod antispoof;
mod builtins;
mod conntrack;
mod fragments;
mod maps;
mod metrics;
mod parse;
mod policy;
mod related;
mod work;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::debug;
use sg_common::{CB_REASON, CB_RULE, CB_TABLE, Direction, IFACE_HYPERVISOR, NO_RULE, Reason};

use crate::{
    maps::{SG_GLOBAL, SG_INTERFACES, SG_WORK},
    parse::{Fragment, Parsed},
    work::{Work, done, finish},
};

/// TCX: -1 hands the packet on to the next program or the stack.
const PASS: i32 = TC_ACT_UNSPEC;
const DROP: i32 = TC_ACT_SHOT;

const TC_INGRESS: usize = 0;
const TC_EGRESS: usize = 1;

#[classifier]
pub fn sg_tc_ingress(mut ctx: TcContext) -> i32 {
    verdict(&mut ctx, TC_INGRESS)
}

#[classifier]
pub fn sg_tc_egress(mut ctx: TcContext) -> i32 {
    verdict(&mut ctx, TC_EGRESS)
}

/// The benchmark's floor (`cargo xtask bench`): a classifier of the same
/// object that returns at once. The daemon never loads or attaches it.
#[classifier]
pub fn sg_tc_floor(_ctx: TcContext) -> i32 {
    PASS
}

#[inline(always)]
fn verdict(ctx: &mut TcContext, hook: usize) -> i32 {
    let Some(w) = SG_WORK.get_ptr_mut(0) else {
        return PASS;
    };
    // SAFETY: a per-CPU slot; one program run uses it at a time.
    let w = unsafe { &mut *w };
    w.done = 0;
    w.now = 0;
    w.rule = NO_RULE;
    w.table = 0;
    decide(ctx, hook, w);
    let reason = Reason::from_u32(w.reason).unwrap_or(Reason::Malformed);
    metrics::count_reason(reason);
    let (rule, table) = (w.rule, w.table);
    metrics::count(ctx, w, reason, rule, table);
    let cb = ctx.cb_mut();
    cb[CB_REASON] = reason as u32;
    cb[CB_RULE] = rule;
    cb[CB_TABLE] = table;
    if reason.accepts() { PASS } else { DROP }
}

/// The stage order. Everything a stage needs is in `w`; the first stage
/// that decides calls [`finish`], and the later ones are skipped.
#[inline(always)]
fn decide(ctx: &TcContext, hook: usize, w: &mut Work) {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(iface) = (unsafe { SG_INTERFACES.get(ifindex) }) else {
        return finish(w, Reason::Unbound, NO_RULE, 0);
    };
    let hypervisor = iface.flags & IFACE_HYPERVISOR != 0;
    // Direction seen from the protected instance.
    let dir = if (hook == TC_INGRESS) != hypervisor {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    w.ifindex = ifindex;
    w.slot = iface.slot;
    // The clock is read only where a stage needs it (see `Work::now`).
    // This call's result is not used: inlined by the JIT, it costs nothing,
    // but the verifier treats it as a helper call that clobbers R1-R5,
    // which leaves fewer register states to tell apart in the stages
    // below (without it, the program takes 194k verified instructions
    // instead of 108k).
    let _ = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() };
    w.dir = dir as u32;
    let kind = parse::parse(ctx, &mut w.packet, iface.flags);
    if hypervisor && dir == Direction::Egress && kind != Parsed::Malformed {
        antispoof::stage_link(ctx, w, iface, antispoof::link_kind(kind));
    }
    match kind {
        Parsed::NotIp(_) | Parsed::Arp if done(w) => return,
        Parsed::NotIp(ethertype) => return builtins::non_ip(w, ethertype),
        Parsed::Arp => return builtins::non_ip(w, parse::ETH_P_ARP),
        Parsed::Malformed => {
            debug!(
                ctx,
                "sg: malformed IP packet dropped on ifindex {}", ifindex
            );
            return finish(w, Reason::Malformed, NO_RULE, 0);
        }
        Parsed::Ip => {}
    }
    (w.global_flags, w.timeouts) = match SG_GLOBAL.get(0) {
        Some(g) => (g.flags, g.timeouts),
        None => (0, sg_common::SessionTimeouts::DEFAULT),
    };
    w.key = conntrack::session_key(ifindex, &w.packet, dir);

    if !done(w) {
        fragments::stage_fragment(w);
    }
    if !done(w) {
        builtins::stage_antispoof_nd_dhcp(w, iface);
    }
    if !done(w) {
        conntrack::stage_session(w, iface);
    }
    if !done(w) {
        related::stage_related(ctx, w);
    }
    if !done(w) {
        builtins::stage_smtp_pmtud_metadata(w, iface);
    }
    if !done(w) {
        policy::stage_rules(w, iface);
    }
    if w.packet.fragment() == Fragment::First {
        fragments::remember_fragment(w);
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
