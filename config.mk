# parm version
VERSION = 0.1.0

# paths
PREFIX = /usr/local
MANPREFIX = $(PREFIX)/share/man
LIBDIR = $(PREFIX)/lib
INCDIR = $(PREFIX)/include

# where slow-to-build test helpers (llama.cpp) and fetched fixtures live
CACHE = $(HOME)/.cache/parm

# flags
PKGS = openblas msgpack libarchive libcurl jansson libcrypto
CC = cc
CPPFLAGS = -D_DEFAULT_SOURCE -D_GNU_SOURCE -DPARM_VERSION=\"$(VERSION)\"
CFLAGS = -std=c11 -O2 -march=native -g -Wall -Wextra -Wno-unused-parameter -pthread
LDFLAGS = -pthread
LDLIBS = -lm
