// Smoke test of the WebGPU device on this machine's adapter: lavapipe (Mesa >= 25) after scripts/setup.sh,
// which CI runs. No adapter is a failure, never a skip. On a machine with a real GPU, run it with
// SPECLOOP_WEBGPU_EXPECT=hardware to assert a hardware adapter instead of a software one.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { WebGpuSoftwareAdapterError, WebGpuUnavailableError } from "../../errors.js";
import { createWebGpuDevice, isSoftwareAdapter, RAISED_LIMITS, type WebGpuDevice } from "./device.js";

const expectSoftware = (process.env.SPECLOOP_WEBGPU_EXPECT ?? "software") === "software";

let gpu: WebGpuDevice;

before(async () => {
  gpu = await createWebGpuDevice({ label: "device.test" });
});

after(() => {
  gpu?.destroy();
});

function storageBuffer(device: GPUDevice, data: Float32Array, extraUsage = 0): GPUBuffer {
  const buffer = device.createBuffer({
    size: data.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage,
    mappedAtCreation: true,
  });
  new Float32Array(buffer.getMappedRange()).set(data);
  buffer.unmap();
  return buffer;
}

async function readBack(device: GPUDevice, source: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({
    size: source.size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(source, 0, staging, 0, source.size);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

async function dispatch(
  device: GPUDevice,
  code: string,
  buffers: readonly GPUBuffer[],
  workgroups: number,
): Promise<void> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(workgroups);
  pass.end();
  device.queue.submit([encoder.finish()]);
  const error = await device.popErrorScope();
  assert.equal(error, null, `validation error: ${error?.message}`);
}

test("webgpu device - acquires an adapter and reports what it is", () => {
  const { adapter } = gpu;
  assert.ok(adapter.vendor || adapter.description, "adapter info names neither vendor nor description");
  for (const key of ["vendor", "architecture", "device", "description"] as const) {
    assert.equal(typeof adapter[key], "string");
  }
  assert.equal(
    adapter.isSoftware,
    expectSoftware,
    `expected a ${expectSoftware ? "software" : "hardware"} adapter, got ${JSON.stringify(adapter)}`,
  );
});

test("webgpu device - raises storage limits to the adapter's and enables only available features", () => {
  for (const name of RAISED_LIMITS) assert.ok(gpu.limits[name] > 0, name);
  // WebGPU's defaults are 128 MiB and 256 MiB: a device at the adapter's limits is at least that.
  assert.ok(gpu.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024);
  assert.ok(gpu.limits.maxBufferSize >= 256 * 1024 * 1024);
  for (const feature of gpu.features) assert.ok(gpu.device.features.has(feature), feature);
});

test("webgpu device - y = a*x + b over an odd length, leaving the tail untouched", async () => {
  const { device } = gpu;
  const n = 1025;
  const tail = 7;
  const a = 2.5;
  const b = -1;
  const x = Float32Array.from({ length: n }, (_, i) => i * 0.5 - 100);
  const params = new ArrayBuffer(16);
  new DataView(params).setFloat32(0, a, true);
  new DataView(params).setFloat32(4, b, true);
  new DataView(params).setUint32(8, n, true);
  const uniform = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(uniform, 0, params);
  const xs = storageBuffer(device, x);
  const ys = storageBuffer(device, new Float32Array(n + tail).fill(-7));

  await dispatch(
    device,
    /* wgsl */ `
      struct Params { a: f32, b: f32, n: u32 }
      @group(0) @binding(0) var<uniform> params: Params;
      @group(0) @binding(1) var<storage, read> x: array<f32>;
      @group(0) @binding(2) var<storage, read_write> y: array<f32>;
      @compute @workgroup_size(64)
      fn main(@builtin(global_invocation_id) id: vec3<u32>) {
        if (id.x < params.n) { y[id.x] = params.a * x[id.x] + params.b; }
      }`,
    [uniform, xs, ys],
    Math.ceil((n + tail) / 64),
  );
  const y = await readBack(device, ys);

  assert.equal(y.length, n + tail);
  // Every x is a multiple of 0.5 below 500: a*x + b is exact in f32, fused or not.
  for (let i = 0; i < n; i++) assert.equal(y[i], a * x[i]! + b, `y[${i}]`);
  for (let i = n; i < n + tail; i++) assert.equal(y[i], -7, `tail y[${i}] was written`);
  for (const buffer of [uniform, xs, ys]) buffer.destroy();
});

test("webgpu device - a workgroup reduction (sum and max) matches the CPU", async () => {
  const { device } = gpu;
  const n = 1025;
  const x = Float32Array.from({ length: n }, (_, i) => (i % 17) - 8 + (i === 613 ? 100 : 0));
  const xs = storageBuffer(device, x);
  const out = storageBuffer(device, new Float32Array(2));

  await dispatch(
    device,
    /* wgsl */ `
      @group(0) @binding(0) var<storage, read> x: array<f32>;
      @group(0) @binding(1) var<storage, read_write> out: array<f32>;
      var<workgroup> sums: array<f32, 256>;
      var<workgroup> maxes: array<f32, 256>;
      @compute @workgroup_size(256)
      fn main(@builtin(local_invocation_index) lid: u32) {
        var s = 0.0;
        var m = -3.0e38;
        for (var i = lid; i < arrayLength(&x); i += 256u) { s += x[i]; m = max(m, x[i]); }
        sums[lid] = s;
        maxes[lid] = m;
        workgroupBarrier();
        for (var stride = 128u; stride > 0u; stride >>= 1u) {
          if (lid < stride) {
            sums[lid] += sums[lid + stride];
            maxes[lid] = max(maxes[lid], maxes[lid + stride]);
          }
          workgroupBarrier();
        }
        if (lid == 0u) { out[0] = sums[0]; out[1] = maxes[0]; }
      }`,
    [xs, out],
    1,
  );
  const [sum, max] = await readBack(device, out);

  // Small integers: the sum is exact whatever the order of additions.
  assert.equal(
    sum,
    x.reduce((acc, v) => acc + v, 0),
  );
  assert.equal(max, Math.max(...x));
  assert.equal(max, 93);
  xs.destroy();
  out.destroy();
});

test("webgpu device - refuses a software adapter when software is not allowed", async () => {
  if (expectSoftware) {
    await assert.rejects(createWebGpuDevice({ allowSoftware: false }), WebGpuSoftwareAdapterError);
  } else {
    const hardware = await createWebGpuDevice({ allowSoftware: false });
    assert.equal(hardware.adapter.isSoftware, false);
    hardware.destroy();
  }
});

test("webgpu device - an unusable Dawn backend fails with what was tried and the setup hint", async () => {
  await assert.rejects(createWebGpuDevice({ dawnOptions: ["backend=no-such-backend"] }), (err: unknown) => {
    assert.ok(err instanceof WebGpuUnavailableError);
    assert.match(err.message, /no-such-backend/);
    assert.match(err.message, /scripts\/setup\.sh/);
    assert.equal(err.kind, "failed_precondition");
    return true;
  });
});

test("webgpu device - classifies software adapters by their info", () => {
  const info = { vendor: "", architecture: "", device: "", description: "" };
  assert.equal(isSoftwareAdapter({ ...info, vendor: "mesa", description: "llvmpipe (LLVM 19.1.7)" }), true);
  assert.equal(isSoftwareAdapter({ ...info, vendor: "google", description: "SwiftShader Device" }), true);
  assert.equal(isSoftwareAdapter({ ...info, vendor: "nvidia", isFallbackAdapter: true }), true);
  assert.equal(
    isSoftwareAdapter({ ...info, vendor: "nvidia", architecture: "hopper", device: "H100" }),
    false,
  );
});

test("webgpu device - destroy is idempotent and loses the device", async () => {
  const second = await createWebGpuDevice({ label: "device.test destroy" });
  second.destroy();
  second.destroy();
  const info = await second.lost;
  assert.equal(info.reason, "destroyed");
});
