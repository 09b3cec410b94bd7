/* peft.h - an ARM in the official PARM code's format: the directory its
 * patched peft's save_pretrained writes (SPEC "Official checkpoints"):
 *
 *   adapter_config.json          peft_type PBLORA, r1, r2, obj_num,
 *                                lora_alpha, target_modules, bias "none"
 *   adapter_model.safetensors    for each layer L and module M,
 *     base_model.model.model.layers.L.self_attn.{q,k,v,o}_proj.pblora_X
 *     base_model.model.model.layers.L.mlp.{gate,up,down}_proj.pblora_X
 *     with X: A (r1+r2, in), B (out, r1+r2), W1 (r1, r1), W2 (obj_num, r2^2)
 *
 * the same maths as pblora.h (scale lora_alpha / r2; W2(alpha) is
 * alpha @ W2 viewed as r2 x r2, row-major).  Hugging Face keeps q_proj and
 * k_proj rows in the rotate-half order and llama.cpp's converter permutes
 * them to its interleaved order for the llama architecture (not for the
 * NEOX-rope ones, qwen2 and qwen3): the rows of B for q and k are permuted
 * the same way on import and back on export.  phi3's fused qkv_proj and
 * gate_up_proj have no counterpart here and are refused by name.
 */
#ifndef PARM_PEFT_H
#define PARM_PEFT_H

#include "arm.h"

/* Write arm's adapters as dir/adapter_config.json and
 * dir/adapter_model.safetensors (f32), creating dir.  0, or -1 +
 * parm_error. */
int parm_arm_export_peft(const parm_arm *arm, const char *dir);

/* The ARM merged at alpha[k] as one ordinary LoRA in peft's format (for
 * servers that take one adapter per request, as vLLM's --lora-modules):
 * adapter_config.json with peft_type LORA, r = lora_alpha = r1 + r2 (so
 * peft's scale is 1), and ...q_proj.lora_A.weight (r, in), lora_B.weight
 * (out, r) = s B M(alpha), B's q and k rows in Hugging Face's order.  0,
 * or -1 + parm_error. */
int parm_arm_export_peft_lora(const parm_arm *arm, const float *alpha, const char *dir);

/* Read the checkpoint in dir onto the backbone at backbone_path: a new
 * ARM (objectives named by names[k], or objective1 ...; beta as given).
 * Every tensor of the file must be one it reads: anything else is refused
 * by name.  NULL + parm_error. */
parm_arm *parm_arm_import_peft(const char *dir, const char *backbone_path,
			       const char *const *names, float beta);

#endif
