/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Inside ipvs_glue.ko: the functions between ipvs_glue_sched.c (C) and sched.rs (Rust), which
 * declares the same signatures in its extern "C" block; keep the two in step. Not exported.
 */
#ifndef HARK_IPVS_GLUE_SCHED_H
#define HARK_IPVS_GLUE_SCHED_H

#include <linux/types.h>

struct ip_vs_service;
struct ip_vs_dest;

/* C, called by Rust. */
struct ip_vs_dest *ipvs_glue_dest_next(struct ip_vs_service *svc, struct ip_vs_dest *prev);
int ipvs_glue_dest_weight(const struct ip_vs_dest *dest);
bool ipvs_glue_dest_overloaded(const struct ip_vs_dest *dest);
int ipvs_glue_dest_active(const struct ip_vs_dest *dest);
int ipvs_glue_register(void);
void ipvs_glue_unregister(void);

/*
 * Rust, called by C. state: what ipvs_glue_rs_svc_new() returned (NULL on allocation
 * failure; process context, may sleep). refresh and schedule run under svc->sched_lock;
 * schedule also under rcu_read_lock() and never sleeps or allocates.
 */
void *ipvs_glue_rs_svc_new(u32 kind);
void ipvs_glue_rs_svc_free(void *state);
void ipvs_glue_rs_svc_refresh(void *state, struct ip_vs_service *svc);
struct ip_vs_dest *ipvs_glue_rs_schedule(void *state);

#endif
