/* parm.h - all of libparm's public interface: #include <parm.h> and link
 * with `pkg-config --cflags --libs libparm`.  libparm(3) is the guide. */
#ifndef PARM_H
#define PARM_H

#include <parm/arch.h>
#include <parm/arm.h>
#include <parm/bpe_train.h>
#include <parm/chat.h>
#include <parm/check.h>
#include <parm/dataset.h>
#include <parm/export.h>
#include <parm/gguf.h>
#include <parm/metrics.h>
#include <parm/mix.h>
#include <parm/model.h>
#include <parm/optim.h>
#include <parm/pblora.h>
#include <parm/peft.h>
#include <parm/prompts.h>
#include <parm/quant.h>
#include <parm/remote.h>
#include <parm/rng.h>
#include <parm/safetensors.h>
#include <parm/sample.h>
#include <parm/scorer.h>
#include <parm/stream.h>
#include <parm/svg.h>
#include <parm/tokenizer.h>
#include <parm/train.h>
#include <parm/trainer.h>
#include <parm/util.h>

#endif
