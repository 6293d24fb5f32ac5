/* Greedy arena planner. A RESHAPE (or SQUEEZE) output shares its input's bytes (tensors are written once, by
 * their producer, so the two can never differ): the input's lifetime is stretched over both. Every non-constant tensor lives from the first operator that touches it to
 * the last (graph inputs from before the first op, graph outputs past the last). Tensors are placed
 * largest first, each at the lowest offset where it overlaps no already-placed tensor whose lifetime
 * intersects its own. The list of placed tensors, kept sorted by offset, lives in scratch (the not yet
 * used tail of the arena). An op's scratch (optimized kernels) is placed last, the same way, live at
 * that op only. Variable tensors (SVDF state, is_variable) live for the whole model: a region of
 * their own. Lifetimes, aliases and the placed marks are in e->tplan (init only). */
#include "engine_internal.h"
#include "tfa/errors.h"

static uint32_t prv_round_up(uint32_t v)
{
    return (v + (TFA_ENGINE_ARENA_ALIGN - 1u)) & ~(TFA_ENGINE_ARENA_ALIGN - 1u);
}

static int prv_lifetimes_meet(const tfa_eng_tplan_t *a, const tfa_eng_tplan_t *b)
{
    return a->first_use <= b->last_use && b->first_use <= a->last_use;
}

static void prv_alias_reshapes(tfa_engine_t *e)
{
    for (uint32_t i = 0; i < e->op_count; i++) {
        const tfa_eng_op_t *op = &e->ops[i];
        if (op->code != TFA_OP_RESHAPE && op->code != TFA_OP_SQUEEZE) {
            continue;
        }
        tfa_eng_tensor_t *in = tfa_eng_io(e, &op->inputs, 0);
        tfa_eng_tensor_t *out = tfa_eng_io(e, &op->outputs, 0);
        tfa_eng_tplan_t *po = tfa_eng_tplan(e, out);
        if (in->const_data != NULL || po->alias != 0) {
            continue;
        }
        while (tfa_eng_tplan(e, in)->alias != 0) { /* follow to the root; chains end (see below) */
            in = &e->tensors[tfa_eng_tplan(e, in)->alias - 1u];
        }
        if (in == out) {
            continue; /* the chain from in reached out: aliasing it would make a cycle */
        }
        tfa_eng_tplan_t *pi = tfa_eng_tplan(e, in);
        po->alias = (uint16_t)(in - e->tensors + 1);
        pi->first_use = po->first_use < pi->first_use ? po->first_use : pi->first_use;
        pi->last_use = po->last_use > pi->last_use ? po->last_use : pi->last_use;
    }
}

int tfa_eng_plan(tfa_engine_t *e, uint8_t *scratch, uint32_t scratch_size, uint32_t *bytes)
{
    prv_alias_reshapes(e);
    uint16_t *order = (uint16_t *)(void *)scratch; /* scratch is 16-byte aligned */
    uint32_t placed = 0;
    uint64_t total = 0;
    uint32_t wanted = 0;
    tfa_eng_tplan_t *const plan = e->tplan;
    for (uint32_t i = 0; i < e->tensor_count; i++) {
        tfa_eng_tensor_t *t = &e->tensors[i];
        tfa_eng_tplan_t *p = &plan[i];
        if (t->variable && t->const_data == NULL && p->alias == 0) {
            /* state kept across invocations: live from before the first op to after the last, so no
             * other tensor or scratch ever shares its bytes */
            p->first_use = -1;
            p->last_use = (int32_t)e->op_count;
        }
        t->planned = t->const_data == NULL && p->first_use <= p->last_use && p->alias == 0;
        p->placed = 0;
        wanted += t->planned;
    }
    if ((uint64_t)wanted * sizeof(uint16_t) > scratch_size) {
        *bytes = 0;
        return -TFA_ERR_ARENA_EXHAUSTED;
    }
    for (;;) {
        tfa_eng_tensor_t *next = NULL;
        uint32_t next_index = 0;
        uint32_t next_bytes = 0;
        for (uint32_t i = 0; i < e->tensor_count; i++) {
            tfa_eng_tensor_t *t = &e->tensors[i];
            if (t->planned && !plan[i].placed && (next == NULL || tfa_eng_bytes(t) > next_bytes)) {
                next = t;
                next_index = i;
                next_bytes = tfa_eng_bytes(t);
            }
        }
        if (next == NULL) {
            break;
        }
        uint32_t size = prv_round_up(next_bytes);
        uint32_t offset = 0;
        uint32_t k = 0;
        for (; k < placed; k++) {
            const tfa_eng_tensor_t *p = &e->tensors[order[k]];
            if (!prv_lifetimes_meet(&plan[order[k]], &plan[next_index])) {
                continue;
            }
            if ((uint64_t)p->arena_offset >= (uint64_t)offset + size) {
                break; /* the gap before p is large enough */
            }
            uint32_t end = p->arena_offset + prv_round_up(tfa_eng_bytes(p));
            if (end > offset) {
                offset = end;
            }
        }
        if ((uint64_t)offset + size > 0xFFFFFFF0u) {
            *bytes = 0;
            return -TFA_ERR_ARENA_EXHAUSTED; /* cannot be addressed, let alone allocated */
        }
        next->arena_offset = offset;
        plan[next_index].placed = 1;
        /* insert keeping order sorted by offset */
        uint32_t at = placed;
        while (at > 0 && e->tensors[order[at - 1]].arena_offset > offset) {
            order[at] = order[at - 1];
            at--;
        }
        order[at] = (uint16_t)next_index;
        placed++;
        if ((uint64_t)offset + size > total) {
            total = (uint64_t)offset + size;
        }
    }
    /* Scratch of the optimized kernels lives only while its op runs: first fit among the tensors live
     * at that op (the scratch of two ops never meet), so it mostly lands in a gap and costs nothing. */
    for (uint32_t i = 0; i < e->op_count; i++) {
        tfa_eng_op_t *op = &e->ops[i];
        if (op->scratch_bytes == 0) {
            continue;
        }
        const uint32_t size = prv_round_up(op->scratch_bytes);
        uint32_t offset = 0;
        for (uint32_t k = 0; k < placed; k++) {
            const tfa_eng_tensor_t *p = &e->tensors[order[k]];
            if (plan[order[k]].first_use > (int32_t)i || plan[order[k]].last_use < (int32_t)i) {
                continue;
            }
            if ((uint64_t)p->arena_offset >= (uint64_t)offset + size) {
                break;
            }
            uint32_t end = p->arena_offset + prv_round_up(tfa_eng_bytes(p));
            if (end > offset) {
                offset = end;
            }
        }
        if ((uint64_t)offset + size > 0xFFFFFFF0u) {
            *bytes = 0;
            return -TFA_ERR_ARENA_EXHAUSTED;
        }
        op->scratch_offset = offset;
        if ((uint64_t)offset + size > total) {
            total = (uint64_t)offset + size;
        }
    }
    for (uint32_t i = 0; i < e->tensor_count; i++) {
        tfa_eng_tensor_t *t = &e->tensors[i];
        uint32_t root = i;
        while (plan[root].alias != 0) {
            root = plan[root].alias - 1u;
        }
        t->arena_offset = e->tensors[root].arena_offset;
    }
    *bytes = (uint32_t)total;
    return 0;
}
