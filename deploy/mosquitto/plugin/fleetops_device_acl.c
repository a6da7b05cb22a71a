/*
 * Fleetops device ACL plugin for Mosquitto 2.0 (plugin interface version 5).
 *
 * Why a plugin: Mosquitto's acl_file refuses a device that publishes outside its own topics, or
 * a message over the size limit, silently (a debug-level log line at most). The platform must
 * audit and count every such refusal. This plugin is the device listeners' ACL - exactly the
 * topic table of docs/device-protocol.md - and reports each refusal to the platform on the
 * topic given by `plugin_opt_report_topic`, aggregated per second so that a misbehaving device
 * cannot turn its refusals into a flood. The first refusal of a kind goes out at once; repeats
 * within the same second are counted and go out with the listener's next activity (Mosquitto
 * 2.0 gives per-listener plugins no timer; newer versions' tick event flushes them too). The platform's connectivity worker subscribes to it
 * (apps/devices/refusals.py).
 *
 * A device's identity is its MQTT username: the certificate's CN (use_identity_as_username) or
 * the token listener's username, and it is the device UUID.
 *
 *   write:     devices/<id>/{heartbeat,telemetry,events,status,config/reported,ota/status}
 *              devices/<id>/commands/<command id>/result
 *   read:      devices/<id>/{config/desired,ota/job}, devices/<id>/commands/<command id>
 *   subscribe: any filter inside devices/<id>/ (each delivery is still checked as a read, so
 *              devices/<id>/# receives exactly the read topics); anything else is refused
 *
 * Options:
 *   plugin_opt_report_topic   topic the refusal reports are published on (required)
 *   plugin_opt_max_payload    bytes; a larger PUBLISH is refused as "oversized" (0: no limit)
 *
 * Report payload (JSON, one message per distinct refusal per second, QoS 1; "id" is unique per
 * broker process and start, so the platform stores a report that reaches it twice only once):
 *   {"id": "<pid>.<start>.<n>", "username": "...", "client_id": "...", "address": "...", "access": "write",
 *    "reason": "acl" | "oversized" | "overflow", "topic": "...", "count": 3, "bytes": 120}
 *
 * Build: gcc -shared -fPIC -O2 -o fleetops_device_acl.so fleetops_device_acl.c
 * (apps/devices/broker.py builds it next to the generated configuration.)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mosquitto.h"
#include "mosquitto_broker.h"
#include "mosquitto_plugin.h"

#define SLOTS 1024
#define FIELD 192

struct refusal {
	bool used;
	int access;
	const char *reason;
	unsigned long count;
	unsigned long bytes;
	char username[FIELD];
	char client_id[FIELD];
	char address[64];
	char topic[FIELD];
};

struct state {
	mosquitto_plugin_id_t *id;
	char *report_topic;
	unsigned long max_payload;
	time_t last_flush;
	unsigned long overflow;
	struct refusal slots[SLOTS];
};

/* One counter for every instance (the device listeners each load the plugin): report ids. */
static unsigned long reports_sent = 0;
static time_t started = 0;

static const char *UP[] = {"heartbeat", "telemetry", "events", "status", "config/reported",
	"ota/status", NULL};
static const char *DOWN[] = {"config/desired", "ota/job", NULL};

static bool in_list(const char *rest, const char **list)
{
	for(int i = 0; list[i]; i++){
		if(!strcmp(rest, list[i])) return true;
	}
	return false;
}

/* "<one level>" + suffix, the level non-empty and free of wildcards. */
static bool command_level(const char *rest, const char *suffix)
{
	const char *slash = strchr(rest, '/');
	size_t length = slash ? (size_t)(slash - rest) : strlen(rest);
	if(length == 0 || memchr(rest, '+', length) || memchr(rest, '#', length)) return false;
	if(suffix == NULL) return slash == NULL;
	return slash != NULL && !strcmp(slash, suffix);
}

/* The part of `topic` after "devices/<username>/", or NULL if it is not in that subtree. */
static const char *own_subtree(const char *topic, const char *username)
{
	size_t length = strlen(username);
	if(strncmp(topic, "devices/", 8)) return NULL;
	topic += 8;
	if(strncmp(topic, username, length) || topic[length] != '/') return NULL;
	return topic + length + 1;
}

static bool allowed(const char *username, const char *topic, int access)
{
	const char *rest = own_subtree(topic, username);
	if(rest == NULL) return false;
	switch(access){
		case MOSQ_ACL_WRITE:
			if(in_list(rest, UP)) return true;
			return !strncmp(rest, "commands/", 9) && command_level(rest + 9, "/result");
		case MOSQ_ACL_READ:
			if(in_list(rest, DOWN)) return true;
			return !strncmp(rest, "commands/", 9) && command_level(rest + 9, NULL);
		case MOSQ_ACL_SUBSCRIBE:
			return true;
		default:
			return false;
	}
}

static void publish(struct state *state, const struct refusal *refusal);

static void copy_field(char *into, size_t size, const char *from)
{
	snprintf(into, size, "%s", from ? from : "");
}

static unsigned long hash(const char *username, const char *topic, int access, const char *reason)
{
	unsigned long h = 5381;
	for(const char *c = username; *c; c++) h = h * 33 + (unsigned char)*c;
	for(const char *c = topic; *c; c++) h = h * 33 + (unsigned char)*c;
	return h * 33 + (unsigned long)access + (unsigned long)(uintptr_t)reason;
}

static void remember(struct state *state, const struct mosquitto *client, const char *topic,
		int access, const char *reason, unsigned long bytes)
{
	const char *username = mosquitto_client_username(client);
	char user[FIELD], subject[FIELD];
	copy_field(user, sizeof(user), username);
	copy_field(subject, sizeof(subject), topic);
	unsigned long start = hash(user, subject, access, reason) % SLOTS;
	for(unsigned long probe = 0; probe < SLOTS; probe++){
		struct refusal *slot = &state->slots[(start + probe) % SLOTS];
		if(slot->used){
			if(slot->access == access && slot->reason == reason && !strcmp(slot->username, user)
					&& !strcmp(slot->topic, subject)){
				slot->count++;
				if(bytes > slot->bytes) slot->bytes = bytes;
				return;
			}
			continue;
		}
		slot->used = true;
		slot->access = access;
		slot->reason = reason;
		slot->count = 1;
		slot->bytes = bytes;
		memcpy(slot->username, user, sizeof(user));
		memcpy(slot->topic, subject, sizeof(subject));
		copy_field(slot->client_id, sizeof(slot->client_id), mosquitto_client_id(client));
		copy_field(slot->address, sizeof(slot->address), mosquitto_client_address(client));
		/* The first of its kind this second goes out now; repeats wait for the next flush. */
		publish(state, slot);
		slot->count = 0;
		slot->bytes = 0;
		return;
	}
	state->overflow++;
}

/* JSON string body: quotes, backslashes and control characters escaped. */
static size_t json_escape(char *into, size_t size, const char *text)
{
	size_t used = 0;
	for(const unsigned char *c = (const unsigned char *)text; *c && used + 7 < size; c++){
		if(*c == '"' || *c == '\\'){
			into[used++] = '\\';
			into[used++] = (char)*c;
		}else if(*c < 0x20){
			used += (size_t)snprintf(into + used, size - used, "\\u%04x", *c);
		}else{
			into[used++] = (char)*c;
		}
	}
	into[used] = '\0';
	return used;
}

static const char *access_name(int access)
{
	switch(access){
		case MOSQ_ACL_WRITE: return "write";
		case MOSQ_ACL_READ: return "read";
		case MOSQ_ACL_SUBSCRIBE: return "subscribe";
		default: return "other";
	}
}

static void publish(struct state *state, const struct refusal *refusal)
{
	char user[FIELD * 6], client[FIELD * 6], address[64 * 6], topic[FIELD * 6];
	char payload[FIELD * 30];
	json_escape(user, sizeof(user), refusal->username);
	json_escape(client, sizeof(client), refusal->client_id);
	json_escape(address, sizeof(address), refusal->address);
	json_escape(topic, sizeof(topic), refusal->topic);
	int length = snprintf(payload, sizeof(payload),
			"{\"id\":\"%d.%ld.%lu\",\"username\":\"%s\",\"client_id\":\"%s\",\"address\":\"%s\",\"access\":\"%s\","
			"\"reason\":\"%s\",\"topic\":\"%s\",\"count\":%lu,\"bytes\":%lu}",
			(int)getpid(), (long)started, ++reports_sent, user, client, address, access_name(refusal->access), refusal->reason, topic,
			refusal->count, refusal->bytes);
	if(length > 0 && (size_t)length < sizeof(payload)){
		mosquitto_broker_publish_copy(NULL, state->report_topic, length, payload, 1, false, NULL);
	}
}

static void flush(struct state *state, time_t now)
{
	if(now == state->last_flush) return;
	state->last_flush = now;
	for(int i = 0; i < SLOTS; i++){
		if(!state->slots[i].used) continue;
		if(state->slots[i].count) publish(state, &state->slots[i]);
		state->slots[i].used = false;
	}
	if(state->overflow){
		struct refusal lost = {.access = 0, .reason = "overflow", .count = state->overflow};
		publish(state, &lost);
		state->overflow = 0;
	}
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *check = event_data;
	struct state *state = userdata;
	(void)event;
	/* Mosquitto 2.0 runs no tick for per-listener plugins: every check (each publish and
	 * delivery of the listener's devices) sends the previous seconds' reports. */
	flush(state, time(NULL));
	if(check->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
	const char *username = mosquitto_client_username(check->client);
	const char *reason = NULL;
	if(username == NULL || !allowed(username, check->topic, check->access)){
		reason = "acl";
	}else if(check->access == MOSQ_ACL_WRITE && state->max_payload
			&& check->payloadlen > state->max_payload){
		reason = "oversized";
	}
	if(reason == NULL) return MOSQ_ERR_SUCCESS;
	remember(state, check->client, check->topic, check->access, reason, check->payloadlen);
	return MOSQ_ERR_ACL_DENIED;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	flush(userdata, time(NULL));
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	if(started == 0) started = time(NULL);
	struct state *state = calloc(1, sizeof(struct state));
	if(state == NULL) return MOSQ_ERR_NOMEM;
	state->id = identifier;
	for(int i = 0; i < option_count; i++){
		if(!strcmp(options[i].key, "report_topic")){
			state->report_topic = strdup(options[i].value);
		}else if(!strcmp(options[i].key, "max_payload")){
			state->max_payload = strtoul(options[i].value, NULL, 10);
		}
	}
	if(state->report_topic == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetops_device_acl: plugin_opt_report_topic is required");
		free(state);
		return MOSQ_ERR_INVAL;
	}
	*userdata = state;
	int rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, state);
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, state);
	}
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct state *state = userdata;
	(void)options;
	(void)option_count;
	if(state == NULL) return MOSQ_ERR_SUCCESS;
	flush(state, state->last_flush + 1);
	mosquitto_callback_unregister(state->id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(state->id, MOSQ_EVT_TICK, on_tick, NULL);
	free(state->report_topic);
	free(state);
	return MOSQ_ERR_SUCCESS;
}
