// Workgroup-wide reductions, correct for any subgroup size (8 on lavapipe, 32 on NVIDIA
// and Apple, up to 64 on AMD): each subgroup reduces in registers, then one slot per
// subgroup is combined. 64 slots cover a 256-wide workgroup of 4-wide subgroups.
var<workgroup> reduce_slots: array<f32, 64>;

fn workgroup_sum(v: f32, sg_id: u32, n_sg: u32, lane: u32) -> f32 {
    let s = subgroupAdd(v);
    if (lane == 0u) {
        reduce_slots[sg_id] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < n_sg; i++) {
        total += reduce_slots[i];
    }
    workgroupBarrier();
    return total;
}

fn workgroup_max(v: f32, sg_id: u32, n_sg: u32, lane: u32) -> f32 {
    let s = subgroupMax(v);
    if (lane == 0u) {
        reduce_slots[sg_id] = s;
    }
    workgroupBarrier();
    var m = reduce_slots[0];
    for (var i = 1u; i < n_sg; i++) {
        m = max(m, reduce_slots[i]);
    }
    workgroupBarrier();
    return m;
}
