# frozen_string_literal: true

require "spec_helper"
require "open3"

# The rule of ext/iodine/src/errors.rs: a jump (Thread#kill, throw) raised by app code the
# binding calls must reach Ruby, never be turned into a value; an exception raised by Ruby
# itself inside the binding must come back as an error, never longjmp through Rust frames.
RSpec.describe "jumps and exceptions from app code the binding calls" do
  def deaths(server)
    server.log.scan(/worker thread \S+ died/).size
  end

  def vm_rss_kb(pid)
    File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+)/, 1].to_i
  end

  def post(port, path, body)
    Net::HTTP.start("127.0.0.1", port, read_timeout: 10, open_timeout: 5) do |http|
      http.post(path, body, "Content-Type" => "application/octet-stream")
    end
  end

  describe "in Iodine::Mustache lambdas" do
    # A subprocess: before the fix the throw record left in $! crashed the VM when read.
    def mustache(script)
      code = "require 'iodine'\nview = Iodine::Mustache.new(template: '{{#l}}text{{/l}}')\n#{script}"
      out, err, status = Timeout.timeout(20) { Open3.capture3(RbConfig.ruby, "-I#{ROOT}/lib", "-e", code) }
      [out, err, status]
    end

    # The renderer asks `value.method(:call).arity`; these jump from there.
    it "lets a throw reach its catch (not the rendered String), with $! left clean" do
      out, err, status = mustache(<<~RUBY)
        thrower = Object.new
        def thrower.call(*) = "called"
        def thrower.method(_name) = throw(:done, :thrown)
        got = catch(:done) { view.render(l: thrower) }
        puts got.inspect, $!.inspect
      RUBY
      expect(status.success?).to be(true), err
      expect(out.lines.map(&:chomp)).to eq([":thrown", "nil"])
    end

    it "lets Thread#kill end the rendering thread (it used to be read as arity -1 and rendering went on)" do
      out, err, status = mustache(<<~RUBY)
        calls = []
        killer = Object.new
        killer.define_singleton_method(:call) { |*| calls << :call; "called" }
        def killer.method(_name)
          Thread.current.kill
          super
        end
        thread = Thread.new { [view.render(l: killer), :returned] }
        puts thread.join(5).value.inspect, thread.alive?, calls.size
      RUBY
      expect(status.success?).to be(true), err
      expect(out.lines.map(&:chomp)).to eq(%w[nil false 0])
    end

    it "still renders a lambda whose call comes from method_missing (no Method to ask for an arity)" do
      out, err, status = mustache(<<~RUBY)
        ghost = Object.new
        def ghost.method_missing(name, *args) = name == :call ? "ghost(\#{args.size})" : super
        def ghost.respond_to_missing?(name, all = false) = name == :call || super
        puts view.render(l: ghost)
      RUBY
      expect(status.success?).to be(true), err
      expect(out.chomp).to eq("ghost(1)")
    end
  end

  describe "on the request path" do
    before(:all) { @server = ServerProcess.new(["-t", "2", app_path("app_code_that_jumps.ru")]) }
    after(:all) { @server&.stop }

    let(:server) { @server }

    it "lets Thread#kill through a status's to_int, an answer's inspect and rack.input.read's length" do
      before = deaths(server)
      %w[/status-kills /inspect-kills].each do |path|
        begin
          http_get(server.port, path)
        rescue EOFError, Errno::ECONNRESET, Net::ReadTimeout
          nil # the thread that was answering died: how the client is told is not the point
        end
      end
      begin
        post(server.port, "/read-len-kills", "body")
      rescue EOFError, Errno::ECONNRESET, Net::ReadTimeout
        nil
      end
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      sleep 0.05 until deaths(server) >= before + 3 || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      expect(deaths(server) - before).to eq(3), server.log
      # The pool replaces a dead worker thread when the main thread next wakes (soon after).
      threads = nil
      20.times do
        break if (threads = http_get(server.port, "/threads").body) == "2"

        sleep 0.1
      end
      expect(threads).to eq("2")
      expect_serving(server)
    end

    it "gives rack.input.read a length that is no Integer Ruby's own TypeError" do
      expect(post(server.port, "/read-len-garbage", "body").body).to start_with("TypeError: no implicit conversion")
    end

    it "raises Ruby's RuntimeError for a read into a String another thread locked, leaking nothing" do
      body = "x" * (1 << 20)
      3.times { expect(post(server.port, "/locked", body).body).to match(/locked/) }
      before = vm_rss_kb(server.pid)
      100.times { expect(post(server.port, "/locked", body).body).to include("temporarily locked") }
      grown_mb = (vm_rss_kb(server.pid) - before) / 1024.0
      # Before the fix each read longjmp'd past the Rust frames holding the 1 MiB body: +100 MB.
      expect(grown_mb).to be < 40, "RSS grew #{grown_mb.round(1)} MB over 100 reads"
      expect_serving(server)
    end

    it "sends a body whose to_path raises a StandardError through each (Rails' Live body), closing it once" do
      response = http_get(server.port, "/path-raises")
      expect(response.code).to eq("200")
      expect(response.body).to eq("live body")
      expect(http_get(server.port, "/closed").body).to eq("1")
      expect(server.log).not_to include("caught an unprotected exception")
    end

    it "lets a Thread#kill in to_path through" do
      before = deaths(server)
      begin
        http_get(server.port, "/path-kills")
      rescue EOFError, Errno::ECONNRESET, Net::ReadTimeout
        nil
      end
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      sleep 0.05 until deaths(server) > before || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      expect(deaths(server)).to eq(before + 1)
      expect_serving(server)
    end
  end
end
