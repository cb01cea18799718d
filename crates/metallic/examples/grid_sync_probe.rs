//! What a barrier across every workgroup of one dispatch costs, against a dependent
//! dispatch, and whether plain loads after it see other workgroups' stores. A decode step
//! that kept its workgroups resident and synchronised them in the kernel (a persistent
//! "megakernel") would trade each of its ~125 dependent dispatches for such a barrier;
//! this measures whether that could pay before anything is built. On the H100 it did not
//! (PERFORMANCE.md, session 12): a barrier costs 1-1.7 µs less than a dispatch, and plain
//! loads after it read stale lines, so activations would have to move through atomics.
//!
//! ```text
//! cargo build --release --example grid_sync_probe
//! target/release/examples/grid_sync_probe            # 1 and 2 workgroups per SM (H100: 132, 264)
//! METALLIC_PROBE_GROUPS=132 METALLIC_PROBE_JSON=out.json grid_sync_probe
//! ```
//!
//! Each round streams `words` bytes of a 512 MiB buffer (`METALLIC_PROBE_MIB`) (a region per round, so rounds
//! miss in cache like a decode step's weights), split over the workgroups:
//! - `dispatches`: one dispatch per round, all in one compute pass (what the engine does);
//! - `barrier`: one dispatch, a grid barrier after each round;
//! - `barrier+pre`: as `barrier`, with the next round's first loads issued before waiting.
//!
//! Each form runs with 24 and 120 rounds, timed with GPU timestamps (median of
//! `METALLIC_PROBE_REPS`, default 7, after 1 s of warm-up); the cost per round is the slope.
//! The groups must all be resident at once (a barrier across workgroups that are not
//! would never end), so keep them within the GPU's capacity: 256-thread workgroups, at most
//! a few per SM. Without a known SM count (`METALLIC_GPU_COMPUTE_UNITS`, or an H100 / H200
//! by name) the probe asks for `METALLIC_PROBE_GROUPS`.

use metallic::gpu::{Gpu, GpuOptions};
use std::time::Instant;

const WG: u32 = 256;
const SLOT: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rounds: u32,
    words: u32,
    first: u32,
    mode: u32,
    regions: u32,
    _pad: [u32; 3],
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Probe {
    gpu: Gpu,
    stream: wgpu::ComputePipeline,
    coherence: wgpu::ComputePipeline,
    coherence_atomic: wgpu::ComputePipeline,
    weights: wgpu::Buffer,
    weight_bytes: u64,
    sync: wgpu::Buffer,
    out: wgpu::Buffer,
    slots: wgpu::Buffer,
    errors: wgpu::Buffer,
    errors_read: wgpu::Buffer,
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    period_ns: f64,
}

impl Probe {
    fn new(gpu: Gpu, max_groups: u32, weight_bytes: u64) -> Self {
        let d = &gpu.device;
        let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("grid_sync_probe"),
            source: wgpu::ShaderSource::Wgsl(include_str!("grid_sync_probe.wgsl").into()),
        });
        let pipeline = |entry: &str| {
            d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[("WG", WG as f64), ("SLOT", SLOT as f64)],
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        };
        let buffer = |label: &str, size: u64, usage: wgpu::BufferUsages| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        let weights = buffer("weights", weight_bytes, U::STORAGE | U::COPY_DST);
        // Speed does not depend on the bits; non-zero ones keep the XOR from being constant.
        let fill: Vec<u32> = (0..(weight_bytes / 4) as u32)
            .map(|i| i.wrapping_mul(2654435761))
            .collect();
        gpu.queue
            .write_buffer(&weights, 0, bytemuck::cast_slice(&fill));
        Self {
            stream: pipeline("stream_rounds"),
            coherence: pipeline("coherence"),
            coherence_atomic: pipeline("coherence_atomic"),
            weights,
            weight_bytes,
            sync: buffer("sync", 256, U::STORAGE | U::COPY_DST),
            out: buffer("out", (max_groups * WG * 4) as u64, U::STORAGE),
            slots: buffer("slots", (max_groups * SLOT * 4) as u64, U::STORAGE),
            errors: buffer("errors", 256, U::STORAGE | U::COPY_DST | U::COPY_SRC),
            errors_read: buffer("errors.read", 256, U::MAP_READ | U::COPY_DST),
            queries: d.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("probe"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: buffer("resolve", 16, U::QUERY_RESOLVE | U::COPY_SRC),
            read: buffer("read", 16, U::MAP_READ | U::COPY_DST),
            period_ns: gpu.queue.get_timestamp_period() as f64,
            gpu,
        }
    }

    fn params(&self, p: Params) -> wgpu::Buffer {
        let b = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.gpu.queue.write_buffer(&b, 0, bytemuck::bytes_of(&p));
        b
    }

    fn stream_group(&self, params: &wgpu::Buffer) -> wgpu::BindGroup {
        self.gpu.bind_group(
            "stream",
            &self.stream,
            &[
                (0, params.as_entire_binding()),
                (1, self.weights.as_entire_binding()),
                (2, self.sync.as_entire_binding()),
                (3, self.out.as_entire_binding()),
            ],
        )
    }

    /// One timed pass of `dispatches` (bind group, workgroups), after clearing the
    /// barrier counter. Returns µs.
    fn time(
        &self,
        pipeline: &wgpu::ComputePipeline,
        dispatches: &[(&wgpu::BindGroup, u32)],
    ) -> f64 {
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        enc.clear_buffer(&self.sync, 0, None);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &self.queries,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            pass.set_pipeline(pipeline);
            for (bg, groups) in dispatches {
                pass.set_bind_group(0, Some(*bg), &[]);
                pass.dispatch_workgroups(*groups, 1, 1);
            }
        }
        enc.resolve_query_set(&self.queries, 0..2, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, 16);
        self.gpu.queue.submit([enc.finish()]);
        let t = read_u64s(&self.gpu, &self.read, 2);
        t[1].saturating_sub(t[0]) as f64 * self.period_ns / 1e3
    }

    fn median(&self, reps: usize, mut f: impl FnMut() -> f64) -> f64 {
        let mut v: Vec<f64> = (0..reps).map(|_| f()).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }
}

fn read_u64s(gpu: &Gpu, buf: &wgpu::Buffer, n: usize) -> Vec<u64> {
    buf.map_async(wgpu::MapMode::Read, .., |r| r.expect("map"));
    gpu.wait_idle().expect("device");
    let v =
        bytemuck::cast_slice::<u8, u64>(&buf.get_mapped_range(..).expect("mapped"))[..n].to_vec();
    buf.unmap();
    v
}

fn main() {
    let gpu = Gpu::new(&GpuOptions::default()).expect("a GPU adapter");
    assert!(gpu.has_timestamps, "the probe needs timestamp queries");
    // One and two workgroups per SM where the SM count is known; elsewhere the caller
    // must say, since a barrier over workgroups that are not all resident never ends.
    let default_groups = match gpu.compute_units {
        Some(units) => format!("{units},{}", 2 * units),
        None => match std::env::var("METALLIC_PROBE_GROUPS") {
            Ok(_) => String::new(),
            Err(_) => {
                eprintln!(
                    "error: the SM count of '{}' is unknown; set METALLIC_PROBE_GROUPS to \
                     workgroup counts that all fit on the GPU at once",
                    gpu.info.name
                );
                std::process::exit(2);
            }
        },
    };
    let groups: Vec<u32> = env_or("METALLIC_PROBE_GROUPS", &default_groups)
        .split(',')
        .map(|g| g.trim().parse().expect("METALLIC_PROBE_GROUPS: counts"))
        .collect();
    let reps: usize = env_or("METALLIC_PROBE_REPS", "7").parse().expect("REPS");
    let sizes_kib: Vec<u64> = env_or("METALLIC_PROBE_KIB", "0,2048,17408")
        .split(',')
        .map(|s| s.trim().parse().expect("METALLIC_PROBE_KIB: sizes"))
        .collect();
    println!("device: {}", gpu.describe());
    let max_groups = *groups.iter().max().unwrap();
    let weight_mib: u64 = env_or("METALLIC_PROBE_MIB", "512").parse().expect("MIB");
    let probe = Probe::new(gpu, max_groups, weight_mib << 20);
    let mut json = Vec::new();

    // Warm-up: clocks ramp up only under sustained load.
    let warm = probe.params(Params {
        rounds: 50,
        words: (17408 << 10) / 16,
        first: 0,
        mode: 1,
        regions: 1,
        _pad: [0; 3],
    });
    let warm_bg = probe.stream_group(&warm);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < 1.0 {
        probe.time(&probe.stream, &[(&warm_bg, groups[0])]);
    }

    println!(
        "| groups | KiB per round | form | µs at 24 rounds | µs at 120 | µs per round | GB/s |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|");
    for &g in &groups {
        for &kib in &sizes_kib {
            let words = ((kib << 10) / 16) as u32;
            let regions = if words == 0 {
                1
            } else {
                ((probe.weight_bytes / 16) / words as u64).max(1) as u32
            };
            let p = |rounds, first, mode| Params {
                rounds,
                words,
                first,
                mode,
                regions,
                _pad: [0; 3],
            };
            for (form, mode) in [("dispatches", 0u32), ("barrier", 1), ("barrier+pre", 2)] {
                let mut at = Vec::new();
                for rounds in [24u32, 120] {
                    let t = if mode == 0 {
                        let bufs: Vec<_> = (0..rounds).map(|r| probe.params(p(1, r, 0))).collect();
                        let bgs: Vec<_> = bufs.iter().map(|b| probe.stream_group(b)).collect();
                        let ds: Vec<_> = bgs.iter().map(|bg| (bg, g)).collect();
                        probe.median(reps, || probe.time(&probe.stream, &ds))
                    } else {
                        let buf = probe.params(p(rounds, 0, mode));
                        let bg = probe.stream_group(&buf);
                        probe.median(reps, || probe.time(&probe.stream, &[(&bg, g)]))
                    };
                    at.push(t);
                }
                let per = (at[1] - at[0]) / 96.0;
                let gbs = if per > 0.0 {
                    (kib << 10) as f64 / per / 1e3
                } else {
                    0.0
                };
                println!(
                    "| {g} | {kib} | {form} | {:.1} | {:.1} | {per:.2} | {gbs:.0} |",
                    at[0], at[1]
                );
                json.push(format!(
                    "{{\"groups\":{g},\"kib\":{kib},\"form\":\"{form}\",\"us24\":{:.2},\"us120\":{:.2},\"us_per_round\":{per:.3}}}",
                    at[0], at[1]
                ));
            }
        }
    }

    // Coherence: plain loads of a neighbour's slot after the barrier, 2000 rounds.
    println!();
    println!("| groups | loads | rounds | stale words | µs per round (2 barriers) |");
    println!("|---:|---|---:|---:|---:|");
    for &g in &groups {
        for (loads, pipeline, slots_at) in [
            ("plain", &probe.coherence, 4u32),
            ("atomic", &probe.coherence_atomic, 6),
        ] {
            let rounds = 2000;
            let buf = probe.params(Params {
                rounds,
                words: 0,
                first: 0,
                mode: 1,
                regions: 1,
                _pad: [0; 3],
            });
            let bg = probe.gpu.bind_group(
                "coherence",
                pipeline,
                &[
                    (0, buf.as_entire_binding()),
                    (2, probe.sync.as_entire_binding()),
                    (slots_at, probe.slots.as_entire_binding()),
                    (5, probe.errors.as_entire_binding()),
                ],
            );
            let mut enc = probe
                .gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            enc.clear_buffer(&probe.errors, 0, None);
            probe.gpu.queue.submit([enc.finish()]);
            let t = probe.time(pipeline, &[(&bg, g)]);
            let mut enc = probe
                .gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            enc.copy_buffer_to_buffer(&probe.errors, 0, &probe.errors_read, 0, 8);
            probe.gpu.queue.submit([enc.finish()]);
            let stale = read_u64s(&probe.gpu, &probe.errors_read, 1)[0] & 0xffff_ffff;
            println!(
                "| {g} | {loads} | {rounds} | {stale} | {:.2} |",
                t / rounds as f64
            );
            json.push(format!(
                "{{\"groups\":{g},\"loads\":\"{loads}\",\"coherence_rounds\":{rounds},\"stale\":{stale},\"us_per_round\":{:.3}}}",
                t / rounds as f64
            ));
        }
    }
    if let Ok(path) = std::env::var("METALLIC_PROBE_JSON") {
        std::fs::write(&path, json.join("\n") + "\n").expect("write JSON");
    }
}
