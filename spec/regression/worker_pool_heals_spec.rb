# frozen_string_literal: true

require "spec_helper"

RSpec.describe "the worker pool heals when an app ends its own thread" do
  [1, 3].each do |threads|
    context "with -t #{threads}" do
      before(:all) { @server = ServerProcess.new(["-t", threads.to_s, app_path("worker_killers.ru")]) }
      after(:all) { @server&.stop }

      let(:port) { @server.port }

      def workers
        deadline = Time.now + 2
        loop do
          n = http_get(port, "/workers").body.to_i
          return n if n == @threads_expected || Time.now > deadline

          sleep 0.05
        end
      end

      it "replaces every killed worker, logs the death, and keeps answering" do
        @threads_expected = threads
        %w[/kill /exit /kill-in-each /kill /exit].each do |path|
          raw_request(port, "GET #{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: 5)
          expect(workers).to eq(threads), "after #{path}"
          started = Time.now
          expect(http_get(port, "/").body).to eq("ok")
          expect(Time.now - started).to be < 1
        end
        expect(@server.log.scan(/worker thread iodine-worker-\d+ died/).size).to eq(5)
      end

      it "still exits 0 on INT" do
        status = @server.stop("INT")
        @server = nil
        expect(status.exitstatus).to eq(0)
      end
    end
  end
end
