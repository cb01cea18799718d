//! Per-dispatch GPU timestamps. In profiling mode every dispatch gets its own compute
//! pass with timestamps at its start and end (needs only TIMESTAMP_QUERY), so the times
//! attribute kernel execution; the gaps between passes are not counted.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Plan};

/// One dispatch's measured GPU time.
#[derive(Clone, Debug)]
pub struct KernelTime {
    pub label: String,
    pub ns: f64,
}

pub struct Profiler {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    capacity: u32,
    period_ns: f64,
}

impl Profiler {
    pub fn new(gpu: &Gpu, max_dispatches: u32) -> Result<Self> {
        if !gpu.has_timestamps {
            return Err(Error::Gpu(format!(
                "'{}' has no timestamp queries; cannot profile",
                gpu.info.name
            )));
        }
        let count = (max_dispatches * 2).min(wgpu::QUERY_SET_MAX_QUERIES);
        let bytes = count as u64 * 8;
        Ok(Self {
            query_set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count,
            }),
            resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile.resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            staging: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile.staging"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            capacity: count / 2,
            period_ns: gpu.queue.get_timestamp_period() as f64,
        })
    }

    /// Records `plans` (each with its row count), one timed pass per dispatch, and the
    /// copy of the timestamps. Returns the labels in order.
    pub fn encode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        plans: &[(&Plan, u32)],
    ) -> Result<Vec<String>> {
        let mut labels = Vec::new();
        for (plan, rows) in plans {
            for d in plan.dispatches.iter().filter(|d| d.runs_at(*rows)) {
                let i = labels.len() as u32;
                if i >= self.capacity {
                    return Err(Error::Gpu(format!(
                        "more than {} dispatches in one profiled step",
                        self.capacity
                    )));
                }
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &self.query_set,
                        beginning_of_pass_write_index: Some(2 * i),
                        end_of_pass_write_index: Some(2 * i + 1),
                    }),
                });
                d.record(&mut pass, *rows);
                labels.push(d.label.clone());
            }
        }
        let n = labels.len() as u32 * 2;
        enc.resolve_query_set(&self.query_set, 0..n, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, n as u64 * 8);
        Ok(labels)
    }

    /// After the submission holding `encode`'s commands: the time of each dispatch.
    pub fn read(&self, gpu: &Gpu, labels: Vec<String>) -> Result<Vec<KernelTime>> {
        let n = labels.len() as u64 * 2;
        let (tx, rx) = std::sync::mpsc::channel();
        self.staging
            .map_async(wgpu::MapMode::Read, ..n * 8, move |r| {
                let _ = tx.send(r);
            });
        gpu.wait_idle()?;
        rx.recv()
            .map_err(|_| Error::Gpu("profile readback dropped".into()))?
            .map_err(|e| Error::Gpu(format!("profile readback failed: {e}")))?;
        let ticks: Vec<u64> = {
            let view = self
                .staging
                .get_mapped_range(..n * 8)
                .map_err(|e| Error::Gpu(e.to_string()))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        self.staging.unmap();
        Ok(labels
            .into_iter()
            .zip(ticks.chunks_exact(2))
            .map(|(label, t)| KernelTime {
                label,
                ns: t[1].saturating_sub(t[0]) as f64 * self.period_ns,
            })
            .collect())
    }
}

/// Per-kernel totals over profiled steps.
#[derive(Clone, Debug)]
pub struct KernelSummary {
    pub label: String,
    pub count: usize,
    pub total_ns: f64,
}

pub fn summarize(steps: &[Vec<KernelTime>]) -> Vec<KernelSummary> {
    let mut rows: Vec<KernelSummary> = Vec::new();
    for t in steps.iter().flatten() {
        match rows.iter_mut().find(|r| r.label == t.label) {
            Some(r) => {
                r.count += 1;
                r.total_ns += t.ns;
            }
            None => rows.push(KernelSummary {
                label: t.label.clone(),
                count: 1,
                total_ns: t.ns,
            }),
        }
    }
    rows.sort_by(|a, b| b.total_ns.total_cmp(&a.total_ns));
    rows
}

/// The table printed by `--profile`: kernel, count, total, average, share of the step.
pub fn format_table(steps: &[Vec<KernelTime>]) -> String {
    let (prompt, decode): (Vec<_>, Vec<_>) = steps
        .iter()
        .cloned()
        .partition(|s| s.first().is_some_and(|k| k.label.starts_with("prefill/")));
    let mut s = String::new();
    if !prompt.is_empty() {
        s += &format_steps("prompt chunks", &prompt);
    }
    s + &format_steps("decode steps", &decode)
}

/// One table over steps of one kind.
fn format_steps(kind: &str, steps: &[Vec<KernelTime>]) -> String {
    let rows = summarize(steps);
    let total: f64 = rows.iter().map(|r| r.total_ns).sum();
    let per_step = total / steps.len().max(1) as f64;
    let mut s = format!(
        "profiled {} {kind}: {:.1} us of kernel time per step, {} dispatches per step\n",
        steps.len(),
        per_step / 1e3,
        steps.first().map_or(0, Vec::len)
    );
    s += &format!(
        "{:<28} {:>7} {:>11} {:>9} {:>7}\n",
        "kernel", "count", "total ms", "avg us", "share"
    );
    for r in rows {
        s += &format!(
            "{:<28} {:>7} {:>11.3} {:>9.2} {:>6.1}%\n",
            r.label,
            r.count,
            r.total_ns / 1e6,
            r.total_ns / r.count as f64 / 1e3,
            100.0 * r.total_ns / total
        );
    }
    s
}
