# frozen_string_literal: true

require "spec_helper"
require_relative "../support/redis_server"

# Iodine::PubSub::Redis (api.md §6.5, §6.6, §10; issue 19) against real redis-servers: each
# example starts its own (spec/support/redis_server.rb) and iodine servers running
# spec/support/apps/redis_app.ru with `-r URL`. Subscribers are WebSocket and SSE clients; a
# message counts as delivered "exactly once" when each subscriber got it once and nothing else
# came within half a second after the last one. Before publishing, the examples wait until
# Redis shows the subscriptions (PUBSUB NUMSUB, CLIENT LIST psub=) and until probe messages
# reached every subscriber. The faults are in redis_faults_spec.rb.
RSpec.describe "Iodine::PubSub::Redis", skip: RedisServer.skip_reason do
  include RealtimeHelpers
  include RedisHelpers
  include ScriptRunner

  after { stop_everything }

  def engine_info(server) = JSON.parse(get!(server, "/engine").body)

  describe ".new" do
    it "raises at once: ArgumentError for a malformed URL, a URL over 4096 bytes, ping: over 255 and rediss:// " \
       "(naming TLS); TypeError for a non-Integer ping" do
      url = "redis://127.0.0.1:#{ServerProcess.free_port}"
      got, err, status = run_script(<<~RUBY)
        def attempt(*args, **options)
          Iodine::PubSub::Redis.new(*args, **options)
          "no error"
        rescue Exception => e
          [e.class.name, e.message]
        end
        puts JSON.generate({
          "port not a number" => attempt("redis://127.0.0.1:port"),
          "port out of range" => attempt("redis://127.0.0.1:70000"),
          "unclosed IPv6 bracket" => attempt("redis://[::1:6379"),
          "4097 bytes" => attempt("redis://" + "h" * (4097 - "redis://".size)),
          "ping: 256" => attempt(#{url.inspect}, ping: 256),
          "ping: '1'" => attempt(#{url.inspect}, ping: "1"),
          "ping: 1.5" => attempt(#{url.inspect}, ping: 1.5),
          "rediss://" => attempt("rediss://127.0.0.1:6380")
        })
      RUBY
      expect(status.success?).to be(true), err
      expect(got.transform_values(&:first)).to eq(
        "port not a number" => "ArgumentError", "port out of range" => "ArgumentError",
        "unclosed IPv6 bracket" => "ArgumentError", "4097 bytes" => "ArgumentError", "ping: 256" => "ArgumentError",
        "ping: '1'" => "TypeError", "ping: 1.5" => "TypeError", "rediss://" => "ArgumentError"
      ), got.inspect
      expect(got["rediss://"].last).to match(/TLS/), got["rediss://"].inspect
    end

    it "accepts redis://[user:password@]host[:port][/db] and ping: 0..255, and the engine is not the default" do
      port = ServerProcess.free_port
      got, err, status = run_script(<<~RUBY)
        engines = ["redis://127.0.0.1:#{port}", "redis://localhost", "redis://:pw@127.0.0.1:#{port}/0",
                   "redis://alice:pw@127.0.0.1:#{port}/3"].map { |url| Iodine::PubSub::Redis.new(url) }
        engines << Iodine::PubSub::Redis.new("redis://127.0.0.1:#{port}", ping: 0)
        engines << Iodine::PubSub::Redis.new("redis://127.0.0.1:#{port}", ping: 255)
        puts JSON.generate([engines.map { |e| e.is_a?(Iodine::PubSub::Engine) }.uniq,
                            engines.any? { |e| Iodine::PubSub.default.equal?(e) }])
      RUBY
      expect(status.success?).to be(true), err
      expect(got).to eq([[true], false])
    end

    it "made in config.ru, attaches itself (subscriptions reach Redis) yet Iodine.publish uses CLUSTER until " \
       "it is the default; -r makes it the default" do
      redis = start_redis
      own = start_iodine(nil, env: { "REDIS_APP_URL" => redis.url })
      cli = start_iodine(redis.url)
      expect(engine_info(own)).to include("class" => "Iodine::PubSub::Redis", "engine" => true, "default" => false)
      expect(engine_info(cli)).to include("class" => "Iodine::PubSub::Redis", "engine" => true, "default" => true)
      channel = unique_id("attached")
      mine, theirs = [own, cli].map { |server| subscribe(server, channel) }
      expect(await_numsub(redis, channel, 2)).to eq(2)
      warm_up([mine, theirs], cli, channel)
      publish(own, channel, "cluster only")
      publish(own, channel, "through redis", via: "engine")
      expect_exactly([mine], ["cluster only", "through redis"])
      expect_exactly([theirs], ["through redis"])
    end

    it "IODINE_REDIS_URL does what -r does when any CLI argument is given" do
      redis = start_redis
      server = start_iodine(nil, env: { "IODINE_REDIS_URL" => redis.url })
      expect(engine_info(server)).to include("class" => "Iodine::PubSub::Redis", "default" => true)
      channel = unique_id("env")
      subscriber = subscribe(server, channel)
      expect(await_numsub(redis, channel, 1)).to eq(1)
      warm_up([subscriber], server, channel)
      publish(server, channel, "via iodine")
      redis.cli("PUBLISH", channel, "via redis-cli")
      expect_exactly([subscriber], ["via iodine", "via redis-cli"])
    end
  end

  describe "two servers sharing one Redis" do
    [1, 2].each do |workers|
      context "with -w #{workers}" do
        it "delivers each message published on either server (or by redis-cli) to every WebSocket and SSE " \
           "subscriber on both servers exactly once" do
          redis = start_redis
          servers = Array.new(2) { start_iodine(redis.url, workers: workers) }
          channel = unique_id("fanout")
          subscribers = servers.flat_map { |server| subscribe_everywhere(server, channel, workers: workers) }
          expect(await_numsub(redis, channel, 2)).to eq(2)
          warm_up(subscribers, servers.first, channel)
          sent = servers.zip(%w[a b]).flat_map do |server, name|
            publish_from_every_worker(server, channel, name, workers: workers)
          end
          redis.cli("PUBLISH", channel, "from redis-cli")
          expect_exactly(subscribers, sent + ["from redis-cli"])
        end

        it "SUBSCRIBEs each channel once per server and holds exactly 2 Redis connections per server" do
          redis = start_redis
          servers = Array.new(2) { start_iodine(redis.url, workers: workers) }
          channels = Array.new(3) { unique_id("count") }
          channels.each do |channel|
            subscribers = servers.flat_map { |server| subscribe_everywhere(server, channel, workers: workers) }
            expect(await_numsub(redis, channel, 2)).to eq(2), "PUBSUB NUMSUB #{channel}"
            warm_up(subscribers, servers.last, channel)
          end
          servers.each do |server|
            publish_from_every_worker(server, channels.first, "traffic", workers: workers)
            expect(cmd_on_every_worker(server, workers, "PING").values.uniq).to eq(["PONG"])
          end
          clients = nil
          settled = wait_until(10) { (clients = redis.clients).size == 4 }
          expect(settled).to be(true), "#{clients.size} connections: #{clients.map { |c| c.slice('addr', 'sub', 'cmd') }}"
          sleep 0.5
          expect(redis.clients.map { |c| c["sub"].to_i }.sort).to eq([0, 0, 3, 3]),
                                                                 "one SUBSCRIBE connection (3 channels) per server"
        end
      end
    end

    it "Iodine.publish(ch, msg, redis) and redis.publish(ch, msg) go through Redis like the default: once everywhere" do
      redis = start_redis
      servers = Array.new(2) { start_iodine(redis.url) }
      channel = unique_id("forms")
      subscribers = servers.flat_map { |server| subscribe_everywhere(server, channel, workers: 1) }
      expect(await_numsub(redis, channel, 2)).to eq(2)
      warm_up(subscribers, servers.first, channel)
      %w[default engine method].each { |via| publish(servers.first, channel, "via #{via}", via: via) }
      publish(servers.last, channel, "via engine on b", via: "engine")
      expect_exactly(subscribers, ["via default", "via engine", "via method", "via engine on b"])
    end

    it "PSUBSCRIBEs match: :redis patterns once per server; they get exactly the matching channels' messages" do
      redis = start_redis
      a = start_iodine(redis.url, workers: 2)
      b = start_iodine(redis.url)
      base = unique_id("pat")
      pattern = "#{base}.*"
      subscribers = subscribe_everywhere(a, pattern, workers: 2, pattern: true) +
                    subscribe_everywhere(b, pattern, workers: 1, pattern: true)
      expect(wait_until(15) { redis.psub_count == 2 }).to be(true), "CLIENT LIST: #{redis.clients}"
      warm_up(subscribers, a, "#{base}.probe")
      publish(a, "#{base}.news", "news")
      publish(b, "#{base}.sport", "sport")
      publish(a, "#{base}X.news", "not matched: another prefix")
      publish(b, base, "not matched: no dot")
      redis.cli("PUBLISH", "#{base}.cli", "cli")
      expect_exactly(subscribers, %w[news sport cli])
    end

    it "passes binary channel names and payloads through unchanged" do
      redis = start_redis
      a = start_iodine(redis.url, workers: 2)
      b = start_iodine(redis.url)
      visible = "bin-#{SecureRandom.hex(4)}-\xFF\xFE\r\n \x01\x7F".b # redis-cli can name it (no NUL)
      nul = "nul-#{SecureRandom.hex(4)}-\x00\xFF\x00".b
      payload = (0..255).to_a.pack("C*") * 2
      by_channel = [visible, nul].to_h do |channel|
        [channel, [a, b].zip([2, 1]).flat_map do |server, workers|
          subscribe_everywhere(server, channel, workers: workers, kinds: %i[ws], binary: true)
        end]
      end
      expect(await_numsub(redis, visible, 2)).to eq(2), "Redis does not know the channel by its exact bytes"
      by_channel.each { |channel, subscribers| warm_up(subscribers, a, channel) }
      publish(a, visible, payload)
      redis.cli("PUBLISH", visible, "\xFE\xFFcli\r\n\x01".b)
      publish(b, nul, "\x00#{payload}\x00".b)
      expect_exactly(by_channel[visible], [payload, "\xFE\xFFcli\r\n\x01".b])
      expect_exactly(by_channel[nul], ["\x00#{payload}\x00".b])
    end

    it "UNSUBSCRIBEs (PUNSUBSCRIBEs) only when the last subscriber in the cluster leaves, and subscribes again " \
       "for the next one" do
      redis = start_redis
      server = start_iodine(redis.url, workers: 2)
      channel = unique_id("leave")
      pattern = "#{unique_id('leave')}.*"
      exact = subscribe_everywhere(server, channel, workers: 2, kinds: %i[ws])
      patterned = subscribe_everywhere(server, pattern, workers: 2, kinds: %i[sse], pattern: true)
      expect(await_numsub(redis, channel, 1)).to eq(1)
      expect(wait_until(15) { redis.psub_count == 1 }).to be(true), "CLIENT LIST: #{redis.clients}"
      (exact[0..-2] + patterned[0..-2]).each(&:close)
      sleep 1 # time enough to unsubscribe by mistake
      expect([redis.numsub(channel), redis.psub_count]).to eq([1, 1]), "with one subscriber of each left"
      [exact.last, patterned.last].each(&:close)
      expect(await_numsub(redis, channel, 0)).to eq(0)
      expect(wait_until(15) { redis.psub_count.zero? }).to be(true), "CLIENT LIST: #{redis.clients}"
      again = subscribe(server, channel)
      expect(await_numsub(redis, channel, 1)).to eq(1)
      warm_up([again], server, channel)
      publish(server, channel, "welcome back")
      expect_exactly([again], ["welcome back"])
    end

    it "Iodine.subscribe SUBSCRIBEs in Redis and its block gets the messages once; Iodine.unsubscribe UNSUBSCRIBEs" do
      redis = start_redis
      server = start_iodine(redis.url)
      channel = unique_id("global")
      get!(server, "/subscribe", ch: channel)
      expect(await_numsub(redis, channel, 1)).to eq(1)
      redis.cli("PUBLISH", channel, "from redis-cli")
      publish(server, channel, "from iodine")
      got = nil
      wait_until(10) { (got = JSON.parse(get!(server, "/received", ch: channel).body)).size >= 2 }
      sleep 0.5
      got = JSON.parse(get!(server, "/received", ch: channel).body)
      expect(got.sort).to eq(["from iodine", "from redis-cli"])
      expect(get!(server, "/unsubscribe", ch: channel).body).to eq("true")
      expect(await_numsub(redis, channel, 0)).to eq(0)
    end
  end

  describe "#cmd, from the workers of a -w 2 server" do
    before(:all) do
      @cmd_redis = RedisServer.new
      @cmd_server = ServerProcess.new(["-w", "2", "-t", "4", "-r", @cmd_redis.url,
                                       File.join(ServerProcess::APPS, "redis_app.ru")])
    end

    after(:all) do
      family = @cmd_server && !@cmd_server.exited? ? ProcessTree.children(@cmd_server.pid) : []
      @cmd_server&.stop
      ProcessTree.wait_until(5) { family.none? { |pid| ProcessTree.alive?(pid) } }
      ProcessTree.kill_all(family)
      @cmd_redis&.close
    end

    # The reply cmd's block got (an error reply: a CmdError); fails if the block did not run.
    def reply_of(*args)
      reply, answer = cmd(@cmd_server, *args)
      expect(answer).to include("timeout" => false, "returned_engine" => true), "cmd#{args.inspect}: #{answer}"
      reply
    end

    it "hands the block the reply converted: status → String, bulk → binary String, integer → Integer, " \
       "array → Array (nested, with nils), nil → nil" do
      key = unique_id("bulk")
      value = "\x00\xFF\r\nvalue".b
      expect(reply_of("PING")).to eq("PONG")
      expect(reply_of("SET", key, value)).to eq("OK")
      bulk = reply_of("GET", key)
      expect([bulk, bulk.encoding]).to eq([value, Encoding::BINARY])
      echo = reply_of("ECHO", "héllo")
      expect([echo.bytes, echo.encoding]).to eq(["héllo".bytes, Encoding::BINARY])
      expect(reply_of("INCRBY", "#{key}-n", 41)).to eql(41)
      expect(reply_of("RPUSH", "#{key}-l", "a", "b", "")).to eql(3)
      expect(reply_of("LRANGE", "#{key}-l", 0, -1)).to eq(["a", "b", ""])
      expect(reply_of("MGET", key, "#{key}-missing")).to eq([value, nil])
      expect(reply_of("EVAL", "return {1, {'x', {}}, 'y'}", 0)).to eq([1, ["x", []], "y"])
      expect(reply_of("GET", "#{key}-missing")).to be_nil
    end

    it "hands an error reply to the block as an Iodine::PubSub::Redis::Error (a StandardError) with Redis's " \
       "message, and goes on" do
      key = unique_id("text")
      expect(reply_of("SET", key, "abc")).to eq("OK")
      {
        ["INCR", key] => "value is not an integer or out of range",
        ["NO-SUCH-COMMAND", "x"] => "unknown command",
        %w[GET] => "wrong number of arguments"
      }.each do |args, text|
        error = reply_of(*args)
        expect(error).to be_a(RedisHelpers::CmdError), "cmd#{args.inspect} got #{error.inspect}"
        expect(error.to_h).to include(class_name: "Iodine::PubSub::Redis::Error", standard_error: true)
        expect(error.message).to include(text)
      end
      expect(reply_of("PING")).to eq("PONG")
    end

    it "takes String, Symbol, Integer, Float, nil, true and false arguments" do
      key = unique_id("args")
      expect(reply_of(:SET, :"#{key}-sym", 7)).to eq("OK")
      expect(@cmd_redis.cli("GET", "#{key}-sym")).to eq("7")
      expect(reply_of("SET", "#{key}-float", 1.5)).to eq("OK")
      expect(@cmd_redis.cli("GET", "#{key}-float")).to eq("1.5")
      expect(reply_of("RPUSH", "#{key}-list", "first", nil, true, false, "last")).to be_a(Integer)
      pushed = @cmd_redis.cli("LRANGE", "#{key}-list", 0, -1).lines(chomp: true)
      expect([pushed.first, pushed.last]).to eq(%w[first last])
    end

    it "raises ArgumentError for other argument types, for no arguments and for (P)(UN)SUBSCRIBE in any case; " \
       "nothing is subscribed" do
      [
        ["SET", "k", [1]], ["SET", "k", { "a" => 1 }], ["SET", "k", Object.new], [],
        %w[SUBSCRIBE c], %w[subscribe c], %w[PSubscribe c*], %w[UNSUBSCRIBE c], %w[punsubscribe c*], [:subscribe, "c"]
      ].each do |args|
        _, answer = cmd(@cmd_server, *args)
        expect(answer).to include("raised" => "ArgumentError"), "cmd#{args.inspect} answered #{answer}"
      end
      expect(@cmd_redis.clients.sum { |c| c["sub"].to_i + c["psub"].to_i }).to eq(0), @cmd_redis.clients.inspect
      expect(reply_of("PING")).to eq("PONG")
    end

    it "runs the block on a Ruby thread of the calling worker, in both workers, over at most 2 Redis connections" do
      answers = cmd_on_every_worker(@cmd_server, 2, "PING", answers: true)
      answers.each do |pid, (reply, answer)|
        expect([answer["block_pid"], reply]).to eq([pid, "PONG"]), "worker #{pid}: #{answer}"
      end
      expect(@cmd_redis.client_count).to be <= 2
    end
  end

  describe "#stats" do
    it "reports connected, reconnects, and exact counts of messages in (from Redis) and out (PUBLISHes)" do
      redis = start_redis
      server = start_iodine(redis.url)
      channel = unique_id("stats")
      subscriber = subscribe(server, channel)
      expect(await_numsub(redis, channel, 1)).to eq(1)
      warm_up([subscriber], server, channel)
      settle([subscriber])
      before = stats(server)
      expect(before).to include("connected" => true, "reconnects" => 0)
      expect(before.values_at("messages_in", "messages_out")).to all(be_a(Integer))
      sent = Array.new(5) { |i| "out-#{i}" }.each { |message| publish(server, channel, message) }
      2.times { |i| redis.cli("PUBLISH", channel, "external-#{i}") }
      expect_exactly([subscriber], sent + %w[external-0 external-1])
      latest = nil
      wait_until(5) { ((latest = stats(server))["messages_in"] - before["messages_in"]) >= 7 }
      expect(latest["messages_out"] - before["messages_out"]).to eq(5), "before #{before}, after #{latest}"
      expect(latest["messages_in"] - before["messages_in"]).to eq(7), "before #{before}, after #{latest}"
    end
  end

  describe "a cmd block that raises, throws or kills its thread" do
    it "is logged (the exception), the server answers, and its 4 worker threads are all there after" do
      redis = start_redis
      server = start_iodine(redis.url)
      %w[raise throw kill].each { |how| expect(get!(server, "/cmd-block", do: how).body).to eq("sent") }
      expect(wait_until(10) { server.log.include?("boom from a cmd block") }).to be(true), log_tail(server)
      threads = nil
      expect(wait_until(10) { (threads = get!(server, "/threads").body) == "4" }).to be(true),
                                                                                     "worker threads: #{threads}\n#{log_tail(server)}"
      expect(cmd(server, "SET", "after", "ok").first).to eq("OK")
    end
  end
end
