# frozen_string_literal: true

require "spec_helper"
require_relative "../support/redis_server"

# Iodine::PubSub::Redis when things go wrong (issue 19's faults), on real processes: Redis
# restarting, hanging (SIGSTOP), absent at start, refusing the password; ACL users; and a hot
# restart (USR1) of iodine while messages flow. Helpers and the app as in redis_spec.rb.
RSpec.describe "Iodine::PubSub::Redis faults", skip: RedisServer.skip_reason do
  include RealtimeHelpers
  include RedisHelpers

  after { stop_everything }

  # At most one log line about Redis per 100 ms on average since `since`.
  def expect_bounded_log_rate(server, since)
    lines = redis_log_lines(server)
    seconds = now - since
    expect(lines.size).to be <= (seconds / 0.1).ceil,
                          "#{lines.size} Redis log lines in #{seconds.round(1)} s:\n#{lines.last(10).join}"
  end

  it "Redis restarts: the engine reconnects and resubscribes, later messages reach the subscribers on both " \
     "servers once, and a command issued while Redis was down is sent when it is back" do
    redis = start_redis
    a = start_iodine(redis.url, workers: 2)
    b = start_iodine(redis.url)
    channel = unique_id("restart")
    subscribers = subscribed_on_both(redis, a, b, channel)

    redis.stop
    expect(wait_until(10) { stats(b)["connected"] == false }).to be(true), "stats while down: #{stats(b)}"
    key = unique_id("queued")
    queued = Thread.new do
      Thread.current.report_on_exception = false # its error comes with #value
      cmd(a, "SET", key, "sent later", wait: 40, id: key, read_timeout: 50)
    end
    expect(a.log_with("cmd issued #{key}", 10)).to include("cmd issued #{key}"), "cmd blocked while Redis is down"
    sleep 1 # down a while longer: reconnection attempts fail meanwhile
    redis.start

    expect(queued.join(60)).not_to be_nil, "the /cmd issued while Redis was down never answered"
    reply, answer = queued.value
    expect(reply).to eq("OK"), "the queued SET got #{reply.inspect} (#{answer})\n#{log_tail(a)}"
    expect(redis.cli("GET", key)).to eq("sent later")
    expect(await_numsub(redis, channel, 2, seconds: 30)).to eq(2), "resubscribed\n#{log_tail(a)}"
    warm_up(subscribers, a, channel)
    sent = publish_from_every_worker(a, channel, "a", workers: 2) + publish_from_every_worker(b, channel, "b")
    expect_exactly(subscribers, sent)
    expect(stats(b)).to include("connected" => true)
    expect(stats(b)["reconnects"]).to be >= 1
    expect(wait_until(10) { redis.client_count == 4 }).to be(true), "connections: #{redis.clients}"
  end

  it "Redis hangs (SIGSTOP, -rp 1): HTTP, publishing and cmd answer quickly, CLUSTER pub/sub still reaches both " \
     "workers; after SIGCONT messages go through Redis again, once" do
    redis = start_redis
    server = start_iodine(redis.url, workers: 2, ping: 1)
    channel = unique_id("hang")
    subscribers = subscribe_everywhere(server, channel, workers: 2)
    expect(await_numsub(redis, channel, 1)).to eq(1)
    warm_up(subscribers, server, channel)

    redis.pause
    slowest = {}
    hung_until = now + 4
    while now < hung_until
      {
        "GET /pid" => -> { get!(server, "/pid") },
        "a publish through Redis" => -> { publish(server, "#{channel}-nobody", "into the void") },
        "cmd" => -> { cmd(server, "PING", wait: 0) }
      }.each do |what, request|
        started = now
        request.call
        slowest[what] = [slowest[what].to_f, now - started].max
      end
      sleep 0.1
    end
    expect(slowest.values.max).to be < 1, "slowest answers while Redis hangs: #{slowest}"
    in_cluster = publish_from_every_worker(server, channel, "cluster", workers: 2, via: "cluster")
    expect_exactly(subscribers, in_cluster)
    redis.resume

    warm_up(subscribers, server, channel, seconds: 30)
    after = publish_from_every_worker(server, channel, "after", workers: 2)
    expect_exactly(subscribers, after)
  end

  it "Redis hangs with -rp 1: the ping notices (stats say disconnected), and after SIGCONT the engine is on " \
     "new connections" do
    redis = start_redis
    server = start_iodine(redis.url, ping: 1)
    channel = unique_id("ping")
    subscriber = subscribe(server, channel)
    expect(await_numsub(redis, channel, 1)).to eq(1)
    hung = nil
    expect(wait_until(10) { (hung = redis.clients.map { |c| c["id"] }).size == 2 }).to be(true), "connections: #{hung}"
    redis.pause
    noticed = wait_until(6) { stats(server)["connected"] == false }
    redis.resume
    expect(noticed).to be(true), "stats 6 s into the hang: #{stats(server)}"
    ids = nil
    fresh = wait_until(20) { (ids = redis.clients.map { |c| c["id"] }).size == 2 && (ids & hung).empty? }
    expect(fresh).to be(true), "connections before the hang #{hung}, now #{ids}"
    expect(wait_until(10) { stats(server)["connected"] }).to be(true)
    expect(stats(server)["reconnects"]).to be >= 1
    warm_up([subscriber], server, channel)
    publish(server, channel, "back")
    expect_exactly([subscriber], ["back"])
  end

  it "Redis unreachable at start: the server starts, serves HTTP, logs a Redis error (not in a loop), and " \
     "delivers once redis-server starts on that port" do
    redis = start_redis(start: false)
    started = now
    server = start_iodine(redis.url, workers: 2)
    expect(serving_pids(server, 2).size).to eq(2)
    server.log_with(/redis/i, 10)
    expect(redis_log_lines(server).grep(/error|refused|connect|unreachable|fail/i)).not_to be_empty, log_tail(server)
    channel = unique_id("late")
    subscribers = subscribe_everywhere(server, channel, workers: 2)
    sleep [3 - (now - started), 0].max # three seconds of reconnection attempts
    expect_bounded_log_rate(server, started)

    redis.start
    expect(await_numsub(redis, channel, 1, seconds: 30)).to eq(1), log_tail(server)
    warm_up(subscribers, server, channel)
    sent = publish_from_every_worker(server, channel, "late", workers: 2)
    redis.cli("PUBLISH", channel, "from redis-cli")
    expect_exactly(subscribers, sent + ["from redis-cli"])
  end

  it "wrong password: the server keeps serving with the same workers, logs the failure at a bounded rate, " \
     "no crash" do
    redis = start_redis(password: "right-#{SecureRandom.hex(4)}")
    started = now
    server = start_iodine(redis.url(password: "wrong"), workers: 2)
    workers = serving_pids(server, 2)
    expect(workers.size).to eq(2)
    codes = []
    while now - started < 4
      codes << http_get(server.port, "/pid").code
      sleep 0.1
    end
    expect(codes.uniq).to eq(["200"])
    expect(redis_log_lines(server).grep(/auth|password|denied/i)).not_to be_empty, log_tail(server)
    expect_bounded_log_rate(server, started)
    expect(server.exited?).to be(false)
    expect(serving_pids(server, 2)).to eq(workers)
    expect(server.log).not_to match(/panic|crash|starting a new one/i), log_tail(server) # no process died
  end

  it "a password in the URL: both connections AUTH as the default user; pub/sub and cmd work" do
    redis = start_redis(password: "pw-#{SecureRandom.hex(4)}")
    server = start_iodine(redis.url)
    channel = unique_id("auth")
    subscriber = subscribe(server, channel)
    expect(await_numsub(redis, channel, 1)).to eq(1), log_tail(server)
    warm_up([subscriber], server, channel)
    publish(server, channel, "authenticated")
    expect_exactly([subscriber], ["authenticated"])
    expect(cmd(server, "PING").first).to eq("PONG")
    expect(redis.clients.map { |c| c["user"] }).to eq(%w[default default])
  end

  it "an ACL user and password in the URL: both connections are that user's; pub/sub and cmd work in -w 2" do
    redis = start_redis(password: "admin-#{SecureRandom.hex(4)}")
    expect(redis.cli("ACL", "SETUSER", "alice", "on", ">pw", "~*", "&*", "+@all")).to eq("OK")
    server = start_iodine(redis.url(user: "alice", password: "pw"), workers: 2)
    channel = unique_id("acl")
    subscribers = subscribe_everywhere(server, channel, workers: 2)
    expect(await_numsub(redis, channel, 1)).to eq(1), log_tail(server)
    warm_up(subscribers, server, channel)
    sent = publish_from_every_worker(server, channel, "alice", workers: 2)
    expect_exactly(subscribers, sent)
    expect(cmd_on_every_worker(server, 2, "ACL", "WHOAMI").values.uniq).to eq(["alice"])
    expect(redis.clients.map { |c| c["user"] }).to eq(%w[alice alice])
  end

  it "USR1 hot restart of a -w 2 server while it publishes: every acknowledged message reaches the other " \
     "server's subscribers once; the new workers' subscribers get messages; still 2 connections per server" do
    redis = start_redis
    a = start_iodine(redis.url, workers: 2)
    b = start_iodine(redis.url)
    flow = unique_id("flow")
    listeners = subscribe_everywhere(b, flow, workers: 1)
    expect(await_numsub(redis, flow, 1)).to eq(1)
    warm_up(listeners, a, flow)
    old = serving_pids(a, 2)
    expect(wait_until(10) { redis.client_count == 4 }).to be(true), "connections: #{redis.clients}"

    acknowledged = []
    uncertain = []
    flowing = true
    publisher = Thread.new do
      i = 0
      while flowing
        message = "flow-#{i += 1}"
        begin
          (http_get(a.port, "/publish?#{query(ch: flow, msg: message)}").code == "200" ? acknowledged : uncertain) << message
        rescue StandardError
          uncertain << message
        end
        sleep 0.02
      end
    end
    sleep 0.5
    a.signal("USR1")
    replaced = wait_until(30) do
      (serving_pids(a, 2) & old).empty? && old.none? { |pid| alive?(pid) }
    rescue StandardError
      false
    end
    sleep 0.5
    flowing = false
    publisher.join(10)
    expect(replaced).to be(true), "the old workers #{old.to_a} still serve 30 s after USR1\n#{log_tail(a)}"
    expect(acknowledged.size).to be > 20, "acknowledged #{acknowledged.size}, uncertain #{uncertain.size}"

    received(listeners, acknowledged.size, seconds: 15).each do |listener, got|
      expect(acknowledged - got).to eq([]), "#{listener.label} lost acknowledged messages"
      expect(got.tally.select { |_, n| n > 1 }).to eq({}), "#{listener.label} got duplicates"
      expect(got - acknowledged - uncertain).to eq([]), "#{listener.label} got messages never published"
    end

    channel = unique_id("after-usr1")
    subscribers = subscribed_on_both(redis, a, b, channel, via: b)
    expect(subscribers.map(&:pid).uniq & old.to_a).to eq([])
    sent = publish_from_every_worker(a, channel, "a", workers: 2) + publish_from_every_worker(b, channel, "b")
    expect_exactly(subscribers, sent)
    clients = nil
    expect(wait_until(10) { (clients = redis.clients).size == 4 }).to be(true), "connections: #{clients}"
  end

  # The master's child that is not serving HTTP: its Redis process (named in its title).
  def redis_process(server)
    children(server.pid).find do |pid|
      File.read("/proc/#{pid}/cmdline").include?("Redis process")
    rescue Errno::ENOENT
      false
    end
  end

  it "the Redis process is killed (-9): the master starts a new one, the workers keep serving, and messages " \
     "go through Redis again, once, over 2 connections" do
    redis = start_redis
    a = start_iodine(redis.url, workers: 2)
    b = start_iodine(redis.url)
    channel = unique_id("respawn")
    subscribers = subscribed_on_both(redis, a, b, channel, via: b)
    workers = serving_pids(a, 2)
    first = redis_process(a)
    expect(first).not_to be_nil, "no Redis process among #{children(a.pid)}"

    Process.kill("KILL", first)
    replaced = nil
    expect(wait_until(15) { (replaced = redis_process(a)) && replaced != first }).to be_truthy,
                                                                                      "no new Redis process\n#{log_tail(a)}"
    expect(serving_pids(a, 2)).to eq(workers)
    # The new process subscribes what the cluster still wants, and only once.
    expect(wait_until(15) { redis.client_count == 4 && redis.numsub(channel) == 2 }).to be(true),
                                                                                     "connections: #{redis.clients}"
    warm_up(subscribers, b, channel)
    sent = publish_from_every_worker(a, channel, "a", workers: 2) + publish_from_every_worker(b, channel, "b")
    expect_exactly(subscribers, sent)
  end

  # Resident memory of `pids` together, in MiB.
  def rss_mib(pids)
    pids.sum do |pid|
      File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+)/, 1].to_i
    rescue Errno::ENOENT
      0
    end / 1024.0
  end

  it "a subscriber that never reads while 192 MiB flow through Redis: it is dropped as too slow, the " \
     "cluster's memory stays bounded, and the server goes on serving and delivering" do
    redis = start_redis
    a = start_iodine(redis.url, workers: 2)
    channel = unique_id("slow")
    stalled = WsFrames::Client.new(a.port, "/ws?#{query(ch: channel)}")
    expect(stalled.upgraded?).to be(true)
    expect(await_numsub(redis, channel, 1)).to eq(1)
    # A subscriber that reads (and drops) everything keeps the channel subscribed in Redis.
    drain = TCPSocket.new("127.0.0.1", a.port)
    drain.write("GET /ws?#{query(ch: channel)} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" \
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    drained = 0
    drainer = Thread.new do
      loop { drained += drain.readpartial(1 << 20).bytesize }
    rescue IOError, SystemCallError
      nil
    end
    family = [a.pid, *children(a.pid)]
    before = rss_mib(family)
    peak = before
    sampling = true
    sampler = Thread.new do
      while sampling
        peak = [peak, rss_mib(family)].max
        sleep 0.05
      end
    end
    # 6,144 PUBLISHes of 32 KiB, pipelined straight into Redis 8 MiB at a time, each batch once
    # the reading subscriber got the one before (it is dropped too if it falls 16 MiB behind).
    payload = "x" * 32_768
    command = "*3\r\n$7\r\nPUBLISH\r\n$#{channel.bytesize}\r\n#{channel}\r\n$#{payload.bytesize}\r\n#{payload}\r\n"
    batch = command * 256
    24.times do |i|
      redis.cli("--pipe", input: batch, timeout: 30)
      expect(wait_until(20) { drained >= (i * 8) << 20 }).to be(true), "the reading subscriber got #{drained >> 20} MiB"
    end
    expect(wait_until(20) { drained >= 190 << 20 }).to be(true), "the reading subscriber got #{drained >> 20} MiB"
    sampling = false
    sampler.join
    grown = peak - before
    RSpec.configuration.reporter.message("    measured: RSS of the master, its Redis process and 2 workers: #{before.round(1)} MiB before, " \
             "peak #{peak.round(1)} MiB while 192 MiB flowed to a subscriber that never reads; " \
                                         "Redis counted #{redis.cli('INFO', 'stats')[/total_net_output_bytes:(\d+)/, 1].to_i >> 20} MiB out")
    # Queued for the stalled client without a bound, one worker alone would grow by 192 MiB.
    expect(grown).to be < 100, "the cluster grew by #{grown.round(1)} MiB"
    # The server dropped it (its backlog passed the limit), and serves everyone else.
    expect(wait_until(10) { stalled.read_message(0.5).nil? rescue true }).to be_truthy
    subscribers = subscribe_everywhere(a, channel, workers: 2, kinds: %i[ws])
    warm_up(subscribers, a, channel)
    expect_exactly(subscribers, publish_from_every_worker(a, channel, "after", workers: 2))
    expect(redis.client_count).to eq(2)
  ensure
    stalled&.close_socket
    drain&.close
    drainer&.join(5)
  end

  it "a stop signalled to every process at once (systemd's TERM to the group): the workers' goodbyes, " \
     "published as they shut down (and the master's), still go through Redis to the other server" do
    redis = start_redis
    goodbyes = unique_id("goodbyes")
    a = start_iodine(redis.url, workers: 2, env: { "REDIS_APP_GOODBYE" => goodbyes })
    b = start_iodine(redis.url)
    listeners = [subscribe(b, goodbyes)]
    expect(await_numsub(redis, goodbyes, 1)).to eq(1)
    workers = serving_pids(a, 2)
    family = [a.pid, *children(a.pid)]
    expect(family.size).to eq(4) # the master, 2 workers, the Redis process
    family.each { |pid| Process.kill("TERM", pid) }
    got = received(listeners, 3, seconds: 15).values.first
    # The master fires :start_shutdown too (first): its goodbye goes the same way.
    expect(got.sort).to eq([a.pid, *workers].map { |pid| "bye:#{pid}" }.sort), "got #{got.inspect}\n#{log_tail(a)}"
    expect(wait_until(15) { family.none? { |pid| alive?(pid) } }).to be(true), "still running: #{family.select { |pid| alive?(pid) }}"
  end
end
