// Directives come before any declaration. `wgpu_cooperative_matrix` also tells build.rs
// to validate this family with the cooperative-matrix capability.
enable f16;
enable wgpu_cooperative_matrix;

// Cooperative operations need subgroup-uniform control flow: every invocation of a
// subgroup takes them together. Naga only knows workgroup uniformity, and reports them
// under this rule wherever they depend on the subgroup id (each subgroup owns its own
// accumulators). The kernels branch only on subgroup-uniform values around them.
diagnostic(off, derivative_uniformity);
