# Build of the flywheel_native Node-API addon: kernels (plain C++, portable + AVX2 translation units picked at
# runtime) and the binding. `node-gyp rebuild --directory native` from the repo root.
{
  "targets": [
    {
      "target_name": "flywheel_native",
      "sources": [
        "src/binding/addon.cpp",
        "src/kernels/simd.cpp",
        "src/kernels/thread_pool.cpp",
        "src/kernels/matmul.cpp",
        "src/kernels/matmul_avx2.cpp",
        "src/kernels/quant_q8_0.cpp",
        "src/kernels/matmul_q8_0.cpp",
        "src/kernels/matmul_q8_0_avx2.cpp",
        "src/kernels/matmul_q8_0_avx512.cpp",
        "src/kernels/quant_k.cpp",
        "src/kernels/matmul_quant.cpp",
        "src/kernels/matmul_quant_avx2.cpp",
        "src/kernels/matmul_quant_avx512.cpp",
        "src/kernels/matmul_q4_0_avx512.cpp",
        "src/kernels/matmul_rows16_avx512.cpp",
        "src/kernels/matmul_int8_avxvnni.cpp",
        "src/kernels/matmul_amx.cpp",
        "src/kernels/matmul_amx_driver.cpp",
        "src/kernels/rmsnorm.cpp",
        "src/kernels/rope.cpp",
        "src/kernels/swiglu.cpp",
        "src/kernels/geglu.cpp",
        "src/kernels/geglu_avx2.cpp",
        "src/kernels/swiglu_avx2.cpp",
        "src/kernels/softmax_weights.cpp",
        "src/kernels/softmax_weights_avx2.cpp",
        "src/kernels/sampling_select.cpp",
        "src/kernels/embedding.cpp",
        "src/kernels/attention.cpp",
        "src/kernels/attention_avx2.cpp",
        "src/kernels/triad.cpp",
        "src/kernels/model.cpp",
        "src/binding/training.cpp",
        "src/binding/training_ops.cpp",
        "src/binding/napi_args.cpp",
        "src/train/embedding_train.cpp",
        "src/train/rmsnorm_train.cpp",
        "src/train/matmul_train.cpp",
        "src/train/rope_train.cpp",
        "src/train/attention_train.cpp",
        "src/train/swiglu_train.cpp",
        "src/train/geglu_train.cpp",
        "src/train/loss_train.cpp",
        "src/train/adamw.cpp",
        "src/train/lora_train.cpp",
        "src/train/train_model.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions", "-O2", "-O3"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y", "-std=gnu++20"],
      "cflags": ["-O3", "-fexceptions"],
      "cflags_cc": ["-O3", "-std=c++17", "-fexceptions", "-Wall", "-Wno-unused-function"],
      "ldflags": ["-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-O3"]
      }
    }
  ]
}
