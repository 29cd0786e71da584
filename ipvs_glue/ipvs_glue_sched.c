// SPDX-License-Identifier: GPL-2.0
/*
 * ipvs_glue: C bridge between IPVS and hark's Rust code.
 *
 * IPVS's API is C macros, inline functions and structures that Rust cannot use directly; this
 * file wraps what hark needs behind small functions:
 *
 * - ipvs_glue_ipvs_version(), exported for ktcpvs_rs;
 * - the IPVS schedulers of this module: struct ip_vs_scheduler instances whose callbacks take
 *   the service's sched_lock and call the Rust side (sched.rs), which owns the per-service
 *   state and makes the choice with hark-proto's l7_sched (the switch's code);
 * - accessors over struct ip_vs_dest and the service's destination list for sched.rs.
 *
 * Policy lives in Rust; this file only does locking, RCU and the IPVS plumbing.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <net/ip_vs.h>

#include "ipvs_glue.h"
#include "ipvs_glue_sched.h"

u32 ipvs_glue_ipvs_version(void)
{
	return IP_VS_VERSION_CODE;
}
EXPORT_SYMBOL_GPL(ipvs_glue_ipvs_version);

/* --- accessors for sched.rs (declared in its extern "C" block) --- */

/*
 * The destination after @prev in @svc's list (the first one when @prev is NULL), NULL at the
 * end. Called with the service's service_mutex held (IPVS holds it around init_service and
 * the add/del/upd_dest callbacks), so the list cannot change during the walk.
 */
struct ip_vs_dest *ipvs_glue_dest_next(struct ip_vs_service *svc, struct ip_vs_dest *prev)
{
	struct list_head *next = prev ? prev->n_list.next : svc->destinations.next;

	if (next == &svc->destinations)
		return NULL;
	return list_entry(next, struct ip_vs_dest, n_list);
}

/* The weight now (0 = quiesced; ipvsadm allows 0..INT_MAX). */
int ipvs_glue_dest_weight(const struct ip_vs_dest *dest)
{
	return atomic_read(&dest->weight);
}

/* Whether the upper connection threshold has marked the destination overloaded. */
bool ipvs_glue_dest_overloaded(const struct ip_vs_dest *dest)
{
	return READ_ONCE(dest->flags) & IP_VS_DEST_F_OVERLOAD;
}

/* Active connections now. */
int ipvs_glue_dest_active(const struct ip_vs_dest *dest)
{
	return atomic_read(&dest->activeconns);
}

/* --- the schedulers: callbacks into the Rust side (sched.rs) --- */

/*
 * What svc->sched_data points to. @rs is the Rust state: created in init_service, touched
 * only under svc->sched_lock, freed an RCU grace period after done_service (schedule() runs
 * under RCU and may still be using it).
 */
struct ipvs_glue_svc {
	struct rcu_head rcu;
	void *rs;
};

static int glue_init_svc(struct ip_vs_service *svc, u32 kind)
{
	struct ipvs_glue_svc *s = kmalloc_obj(struct ipvs_glue_svc);

	if (!s)
		return -ENOMEM;
	s->rs = ipvs_glue_rs_svc_new(kind);
	if (!s->rs) {
		kfree(s);
		return -ENOMEM;
	}
	spin_lock_bh(&svc->sched_lock);
	ipvs_glue_rs_svc_refresh(s->rs, svc);
	spin_unlock_bh(&svc->sched_lock);
	svc->sched_data = s;
	return 0;
}

static void glue_free_rcu(struct rcu_head *head)
{
	struct ipvs_glue_svc *s = container_of(head, struct ipvs_glue_svc, rcu);

	ipvs_glue_rs_svc_free(s->rs);
	kfree(s);
}

static void glue_done_svc(struct ip_vs_service *svc)
{
	struct ipvs_glue_svc *s = svc->sched_data;

	call_rcu(&s->rcu, glue_free_rcu);
}

/* add_dest (after linking), del_dest (after unlinking), upd_dest (after the new values). */
static int glue_dest_changed(struct ip_vs_service *svc, struct ip_vs_dest *dest)
{
	struct ipvs_glue_svc *s = svc->sched_data;

	spin_lock_bh(&svc->sched_lock);
	ipvs_glue_rs_svc_refresh(s->rs, svc);
	spin_unlock_bh(&svc->sched_lock);
	return 0;
}

/* Packet path: softirq (or process context with BHs off), under rcu_read_lock(). */
static struct ip_vs_dest *glue_schedule(struct ip_vs_service *svc, const struct sk_buff *skb,
					struct ip_vs_iphdr *iph)
{
	struct ipvs_glue_svc *s = svc->sched_data;
	struct ip_vs_dest *dest;

	spin_lock_bh(&svc->sched_lock);
	dest = ipvs_glue_rs_schedule(s->rs);
	spin_unlock_bh(&svc->sched_lock);
	if (!dest)
		ip_vs_scheduler_err(svc, "no destination available");
	return dest;
}

/* Scheduler kinds: the numbers of sched.rs's `Kind`. */
#define GLUE_KIND_SWRR 0

static int glue_init_swrr(struct ip_vs_service *svc)
{
	return glue_init_svc(svc, GLUE_KIND_SWRR);
}

static struct ip_vs_scheduler glue_swrr_scheduler = {
	.name = "swrr",
	.refcnt = ATOMIC_INIT(0),
	.module = THIS_MODULE,
	.n_list = LIST_HEAD_INIT(glue_swrr_scheduler.n_list),
	.init_service = glue_init_swrr,
	.done_service = glue_done_svc,
	.add_dest = glue_dest_changed,
	.del_dest = glue_dest_changed,
	.upd_dest = glue_dest_changed,
	.schedule = glue_schedule,
};

/* Called from the Rust module init. */
int ipvs_glue_register(void)
{
	return register_ip_vs_scheduler(&glue_swrr_scheduler);
}

/*
 * Called from the Rust module exit. No service is bound any more (each bound service holds a
 * module reference), but IPVS drops that reference right after done_service: wait for the
 * schedule() calls still under RCU, then for the pending frees.
 */
void ipvs_glue_unregister(void)
{
	unregister_ip_vs_scheduler(&glue_swrr_scheduler);
	synchronize_rcu();
	rcu_barrier();
}

MODULE_VERSION("0.1.0");
