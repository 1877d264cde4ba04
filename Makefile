# weibao build. Every library comes from a Debian package found with
# pkg-config (libsensors ships no .pc file on Debian 12, so it falls back to
# -lsensors). Objects of one variant go under $(B); the sanitizer variant of
# the unit tests is the same tree built with B=build/asan.

CC       ?= cc
B        ?= build
PREFIX   ?= /usr/local
LIBEXECDIR ?= $(PREFIX)/libexec/weibao
MIBDIR   ?= $(PREFIX)/share/weibao/mibs
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= /lib/systemd/system
MANDIR   ?= $(PREFIX)/share/man
PYTHON   ?= /usr/bin/python3

PKGS_AGENT = libcjson libsystemd sqlite3 nettle
PKGS_SENDER = libcurl libcjson libsystemd
PKGS_STUB  = libmicrohttpd gnutls sqlite3 libcjson libsystemd
PKGS_CTL   = libcjson libsystemd
PKGS_TEST  = cmocka

WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wcast-qual
CFLAGS   ?= -O2 -g
# The language, warnings and sanitizers always apply, whatever CFLAGS says.
override CFLAGS += -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP $(EXTRA_CFLAGS)
override LDFLAGS += $(EXTRA_LDFLAGS)

pc_cflags = $(shell pkg-config --cflags $(1))
pc_libs   = $(shell pkg-config --libs $(1))
# Flags from pkg-config are looked up once, when a recipe first uses them,
# not when make reads this file: `make deps test` on a fresh machine must see
# the packages that its deps goal has just installed.
once = $(eval $(1) := $(2))$($(1))
SENSORS_LIBS = $(call once,SENSORS_LIBS,$(shell pkg-config --libs libsensors 2>/dev/null || echo -lsensors))

LIB_SRC    := $(wildcard lib/*.c)
RULES_SRC  := $(wildcard rules/*.c)
AGENT_SRC  := $(filter-out agent/main.c agent/weibaoctl.c agent/sender_worker.c,$(wildcard agent/*.c)) $(wildcard collectors/*.c)
STUB_SRC   := $(wildcard server-stub/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_SRC  := $(wildcard bench/*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

CORE_OBJ   := $(call obj,$(LIB_SRC) $(RULES_SRC))
AGENT_OBJ  := $(call obj,$(AGENT_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
BENCH_BIN  := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))

ALL_CFLAGS = $(call once,ALL_CFLAGS,$(CFLAGS) $(call pc_cflags,$(PKGS_AGENT) $(PKGS_SENDER) $(PKGS_STUB) $(PKGS_TEST)) \
              -DWEIBAO_LIBEXECDIR=\"$(LIBEXECDIR)\" -DWEIBAO_MIBDIR=\"$(MIBDIR)\")
AGENT_LIBS = $(call once,AGENT_LIBS,$(call pc_libs,$(PKGS_AGENT)) $(SENSORS_LIBS) -lm)
NETSNMP_LIBS = $(call once,NETSNMP_LIBS,$(call pc_libs,netsnmp))
SENDER_LIBS = $(call once,SENDER_LIBS,$(call pc_libs,$(PKGS_SENDER)))
STUB_LIBS = $(call once,STUB_LIBS,$(call pc_libs,$(PKGS_STUB)) -lm)
CTL_LIBS = $(call once,CTL_LIBS,$(call pc_libs,$(PKGS_CTL)))
TEST_LIBS = $(call once,TEST_LIBS,$(AGENT_LIBS) $(NETSNMP_LIBS) $(call pc_libs,$(PKGS_TEST) sqlite3 libmicrohttpd))

PROGRAMS = $(B)/weibao-agent $(B)/weibao-sender $(B)/weibao-snmp.so $(B)/weibaoctl $(B)/weibao-stub

.SECONDARY:

.PHONY: all deps test unit unit-asan fuzz fuzz-smoke golden golden-update integration bench \
        format check-format demo clean install deb

all: $(PROGRAMS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The installation paths compiled into the programs: objects that use them
# are rebuilt when they change (`make install PREFIX=/usr` after a plain
# `make`). $(B)/paths is rewritten, when make reads this file, only then.
PATH_USERS := agent/sender.c collectors/snmptrap.c
PATHS_LINE := LIBEXECDIR=$(LIBEXECDIR) MIBDIR=$(MIBDIR)
$(shell mkdir -p $(B) && { echo '$(PATHS_LINE)' | cmp -s - $(B)/paths || echo '$(PATHS_LINE)' >$(B)/paths; })
$(call obj,$(PATH_USERS)) $(patsubst %.c,$(B)/pic/%.o,$(PATH_USERS)): $(B)/paths

$(B)/libweibao-core.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/libweibao-agent.a: $(AGENT_OBJ)
	@rm -f $@
	ar rcs $@ $^

# -rdynamic: weibao-snmp.so uses the agent's own log, allocation and event
# functions.
$(B)/weibao-agent: $(call obj,agent/main.c) $(B)/libweibao-agent.a $(B)/libweibao-core.a
	$(CC) $(CFLAGS) $(LDFLAGS) -rdynamic -o $@ $^ $(AGENT_LIBS) -ldl

# The SNMP decoder: the only part of the agent that links net-snmp, loaded by
# the trap collector when the first datagram arrives (collectors/snmp_receiver.h).
$(B)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(B)/weibao-snmp.so: $(B)/pic/collectors/snmp_receiver.o
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -o $@ $^ $(NETSNMP_LIBS)

# The HTTP worker: the only program that links libcurl (see agent/sender.c for why).
$(B)/weibao-sender: $(call obj,agent/sender_worker.c agent/retry_after.c) $(B)/libweibao-core.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(SENDER_LIBS)

$(B)/weibaoctl: $(call obj,agent/weibaoctl.c) $(B)/libweibao-core.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CTL_LIBS)

$(B)/weibao-stub: $(call obj,$(STUB_SRC)) $(B)/libweibao-core.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(STUB_LIBS)

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(B)/libweibao-agent.a $(B)/libweibao-core.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(TEST_LIBS)

$(B)/bench/%: $(B)/obj/bench/%.o $(B)/libweibao-agent.a $(B)/libweibao-core.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(AGENT_LIBS) $(NETSNMP_LIBS)

# ---- dependencies (Debian packages only) ----
DEB_BUILD = build-essential pkg-config clang clang-format debhelper dpkg-dev libsensors-dev libcurl4-openssl-dev \
            libcjson-dev libmicrohttpd-dev libgnutls28-dev libsqlite3-dev libsystemd-dev libcmocka-dev libsnmp-dev nettle-dev
DEB_TEST  = python3 python3-pytest lm-sensors util-linux iproute2 procps curl openssl sqlite3 snmp systemd lintian groff-base \
            debootstrap systemd-container dbus-daemon python3-dbus python3-gi nftables chromium
DEB_BENCH = collectd-core monit snmptrapd snmptt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
		$(DEB_BUILD) $(DEB_TEST) $(DEB_BENCH)

# ---- tests ----
unit: $(UNIT_BIN)
	@tests/run-unit.sh $(UNIT_BIN)

unit-asan:
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/unit/lsan.supp \
	$(MAKE) --no-print-directory B=build/asan CFLAGS="-O1 -g" \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" unit

FUZZ_CC     = clang
FUZZ_FLAGS  = -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
              $(call pc_cflags,libcjson)
FUZZ_BIN   := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRC))

$(B)/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(RULES_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRC) $(RULES_SRC) $(call pc_libs,libcjson libsystemd) -lm

# The stub's body fuzzer includes the stub's pure validators (body.c,
# inject.c, escalation.c) by source.
$(B)/fuzz/fuzz_stub_body: $(wildcard server-stub/*.c server-stub/*.h)

# The SNMP notification decoder also needs net-snmp and the shipped MIBs
# (found by absolute path, whatever directory the fuzzer runs in).
$(B)/fuzz/fuzz_trap: tests/fuzz/fuzz_trap.c collectors/snmp_receiver.c collectors/trap_verdict.c collectors/snmp_receiver.h $(LIB_SRC) $(RULES_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(call pc_cflags,netsnmp) -DFUZZ_MIBDIR=\"$(CURDIR)/collectors/mibs\" -o $@ $< \
		collectors/snmp_receiver.c collectors/trap_verdict.c $(LIB_SRC) $(RULES_SRC) $(call pc_libs,netsnmp libcjson libsystemd) -lm

# The process collector's parsers (/proc files, proc connector, watch settings).
$(B)/fuzz/fuzz_process: tests/fuzz/fuzz_process.c collectors/proc_parse.c collectors/proc_parse.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< collectors/proc_parse.c

# The heartbeat packet parser and verifier (HMAC from nettle).
$(B)/fuzz/fuzz_heartbeat: tests/fuzz/fuzz_heartbeat.c collectors/hbwire.c collectors/hbwire.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(call pc_cflags,nettle) -o $@ $< collectors/hbwire.c $(call pc_libs,nettle)

fuzz: $(FUZZ_BIN)

# A short run of every fuzz target over its seed corpus; `make fuzz` plus
# running a target by hand is the long form.
fuzz-smoke: $(FUZZ_BIN)
	@tests/run-fuzz.sh $(FUZZ_BIN)

golden: $(B)/weibao-agent
	@tests/run-golden.sh $(B)/weibao-agent

golden-update: $(B)/weibao-agent
	@tests/run-golden.sh --update $(B)/weibao-agent

# Programs the integration tests run (tests/helpers/*.c).
HELPER_BIN := $(patsubst tests/helpers/%.c,$(B)/tests/helpers/%,$(wildcard tests/helpers/*.c))

$(B)/tests/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $<

integration: all $(B)/bench/trapgen $(HELPER_BIN)
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# The full suite; prints one closing "N passed, N failed" line.
test: all $(B)/bench/trapgen $(HELPER_BIN)
	@tests/run-all.sh

bench: all $(BENCH_BIN)
	@bench/run.sh

# ---- formatting ----
FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

format:
	clang-format -i $(FORMAT_SRC)

check-format:
	@clang-format --dry-run -Werror $(FORMAT_SRC) && echo "format: ok"

# ---- the embedded default ----
demo: all
	@examples/demo.sh

# Files go where Debian puts them; the configuration is installed only where
# none exists yet (a package owns it as a conffile instead).
install: all
	install -D -m 0755 $(B)/weibao-agent $(DESTDIR)$(PREFIX)/sbin/weibao-agent
	install -D -m 0755 $(B)/weibao-sender $(DESTDIR)$(LIBEXECDIR)/weibao-sender
	install -D -m 0644 $(B)/weibao-snmp.so $(DESTDIR)$(LIBEXECDIR)/weibao-snmp.so
	install -D -m 0755 $(B)/weibaoctl $(DESTDIR)$(PREFIX)/sbin/weibaoctl
	install -D -m 0755 $(B)/weibao-stub $(DESTDIR)$(PREFIX)/sbin/weibao-stub
	install -d $(DESTDIR)$(MIBDIR) $(DESTDIR)$(SYSCONFDIR)/weibao/rules.d $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 collectors/mibs/*.txt $(DESTDIR)$(MIBDIR)/
	# the units name the programs and configuration where this install puts them
	for u in packaging/systemd/*.service packaging/systemd/*.socket; do \
		sed -e 's|/usr/sbin/weibao|$(PREFIX)/sbin/weibao|g' -e 's|/etc/weibao/|$(SYSCONFDIR)/weibao/|g' $$u \
			>$(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/} || exit 1; \
	done
	for f in rules/default/*.rules; do \
		[ -e $(DESTDIR)$(SYSCONFDIR)/weibao/rules.d/$$(basename $$f) ] || \
			install -m 0644 $$f $(DESTDIR)$(SYSCONFDIR)/weibao/rules.d/; \
	done
	[ -e $(DESTDIR)$(SYSCONFDIR)/weibao/agent.conf ] || \
		install -m 0644 packaging/agent.conf $(DESTDIR)$(SYSCONFDIR)/weibao/agent.conf
	for m in packaging/man/*.[58]; do \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/ || exit 1; \
	done

# The Debian packages, built from a copy of the tree with packaging/debian
# as debian/; the .deb files land in $(B)/deb/.
DEB_VERSION = $(shell sed -n '1s/.*(\(.*\)).*/\1/p' packaging/debian/changelog)
deb:
	rm -rf $(B)/deb && mkdir -p $(B)/deb/weibao-$(DEB_VERSION)
	git ls-files -z --cached --others --exclude-standard | \
		xargs -0 sh -c 'for f; do [ -f "$$f" ] && cp --parents "$$f" $(B)/deb/weibao-$(DEB_VERSION)/; done' sh
	cp -r packaging/debian $(B)/deb/weibao-$(DEB_VERSION)/debian
	# the package builds in its own tree: this make's command-line variables
	# (B=..., travelling in MAKEFLAGS) must not reach the inner make, or it
	# would compile into this tree's objects with Debian's paths
	cd $(B)/deb/weibao-$(DEB_VERSION) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL dpkg-buildpackage -us -uc -b

clean:
	rm -rf build

-include $(shell find $(B)/obj $(B)/pic -name '*.d' 2>/dev/null)
